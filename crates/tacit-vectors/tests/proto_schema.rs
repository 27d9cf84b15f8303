//! The `.proto` files under `proto/` against the prost structs the crates
//! encode with: every message, and of every field its name, number, type,
//! label, packing and oneof, both ways. A field added, renumbered or
//! retyped on one side and not on the other fails.
//!
//! The `.proto` files are compiled in Rust (protox, no protoc); the prost
//! side is read from the crates' sources (the structs are crate-private,
//! and prost's derive keeps no reflection at run time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use protox::prost_reflect::{Cardinality, DescriptorPool, Kind};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Fields, Item, Lit, Meta, Token, Type};

/// How a field is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Label {
    /// A proto3 scalar without presence: absent means the default.
    Implicit,
    /// With presence: `optional` scalars and message fields.
    Optional,
    /// `repeated`.
    Repeated,
}

/// One field, as both sides describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Field {
    number: u32,
    name: String,
    /// A scalar type name, or `message Name`.
    ty: String,
    label: Label,
    packed: bool,
    /// The oneof the field belongs to.
    oneof: Option<String>,
}

/// Message name to its fields.
type Schema = BTreeMap<String, BTreeSet<Field>>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The names of oneof members differ in case between the two sides
/// (`upload_prekeys` against `UploadPreKeys`): compared without case and
/// underscores.
fn member_name(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn scalar(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => format!("message {}", m.name()),
        Kind::Enum(e) => format!("enum {}", e.name()),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// The schema of `file` under `proto/`, compiled with protox.
fn proto_schema(file: &str) -> Schema {
    let mut compiler = protox::Compiler::new([repo().join("proto")]).unwrap();
    compiler.open_file(file).unwrap();
    let pool: DescriptorPool = compiler.descriptor_pool();
    let file = pool.get_file_by_name(file).unwrap();
    let mut schema = Schema::new();
    for message in file.messages() {
        assert!(
            message.child_messages().next().is_none(),
            "{}: nested messages are not used",
            message.name()
        );
        let mut fields = BTreeSet::new();
        for f in message.fields() {
            let oneof = f
                .containing_oneof()
                .filter(|o| !o.is_synthetic())
                .map(|o| o.name().to_owned());
            let label = match f.cardinality() {
                Cardinality::Repeated => Label::Repeated,
                _ if oneof.is_some() => Label::Implicit,
                _ if f.supports_presence() => Label::Optional,
                _ => Label::Implicit,
            };
            let name = if oneof.is_some() {
                member_name(f.name())
            } else {
                f.name().to_owned()
            };
            fields.insert(Field {
                number: f.number(),
                name,
                ty: scalar(&f.kind()),
                label,
                packed: f.is_packed(),
                oneof,
            });
        }
        schema.insert(message.name().to_owned(), fields);
    }
    schema
}

/// Whether `attrs` derive `name` (`Message` or `Oneof`).
fn derives(attrs: &[Attribute], name: &str) -> bool {
    let mut found = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.segments.last().is_some_and(|s| s.ident == name) {
                found = true;
            }
            Ok(())
        });
    }
    found
}

fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

/// A `#[prost(...)]` attribute, split up.
#[derive(Debug, Default)]
struct ProstAttr {
    ty: Option<String>,
    label: Option<Label>,
    tag: Option<u32>,
    oneof: Option<String>,
    packed: Option<bool>,
}

const SCALARS: [&str; 17] = [
    "double",
    "float",
    "int32",
    "int64",
    "uint32",
    "uint64",
    "sint32",
    "sint64",
    "fixed32",
    "fixed64",
    "sfixed32",
    "sfixed64",
    "bool",
    "string",
    "bytes",
    "message",
    "enumeration",
];

fn lit_str(expr: &Expr) -> String {
    match expr {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(s) => s.value(),
            _ => panic!("a prost attribute value is a string"),
        },
        _ => panic!("unexpected prost attribute value"),
    }
}

fn prost_attr(attrs: &[Attribute]) -> Option<ProstAttr> {
    let attr = attrs.iter().find(|a| a.path().is_ident("prost"))?;
    let metas = attr
        .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        .unwrap();
    let mut out = ProstAttr::default();
    for meta in metas {
        let key = meta.path().get_ident().map(ToString::to_string);
        let key = key.as_deref().unwrap_or_default();
        match (&meta, key) {
            (_, "optional") => out.label = Some(Label::Optional),
            (_, "repeated") => out.label = Some(Label::Repeated),
            (Meta::NameValue(nv), "tag") => out.tag = Some(lit_str(&nv.value).parse().unwrap()),
            (Meta::NameValue(nv), "oneof") => out.oneof = Some(lit_str(&nv.value)),
            (Meta::NameValue(nv), "packed") => out.packed = Some(lit_str(&nv.value) == "true"),
            (Meta::NameValue(_), "tags") => {}
            (_, k) if SCALARS.contains(&k) => out.ty = Some(k.to_owned()),
            (_, k) => panic!("unknown prost attribute key {k:?}"),
        }
    }
    Some(out)
}

/// The message a field of type `ty` holds: the last path segment, through
/// `Option<..>`, `Vec<..>` and `Box<..>`.
fn message_type(ty: &Type) -> String {
    let Type::Path(p) = ty else {
        panic!("unexpected field type")
    };
    let last = p.path.segments.last().unwrap();
    let name = last.ident.to_string();
    if matches!(name.as_str(), "Option" | "Vec" | "Box") {
        if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
            if let Some(syn::GenericArgument::Type(inner)) = args.args.first() {
                return message_type(inner);
            }
        }
    }
    name
}

fn field_of(attr: &ProstAttr, name: String, ty: &Type, oneof: Option<String>) -> Field {
    let proto_ty = attr.ty.clone().unwrap();
    let ty_name = if proto_ty == "message" {
        format!("message {}", message_type(ty))
    } else {
        proto_ty.clone()
    };
    let label = attr.label.unwrap_or(Label::Implicit);
    let packable = !matches!(proto_ty.as_str(), "string" | "bytes" | "message");
    Field {
        number: attr.tag.unwrap(),
        name,
        ty: ty_name,
        label,
        packed: label == Label::Repeated && packable && attr.packed.unwrap_or(true),
        oneof,
    }
}

/// A message's plain fields, and its oneof fields with their enums' paths.
type SourceMessage = (BTreeSet<Field>, Vec<(String, String)>);

/// A change to a schema.
type Edit<'a> = Box<dyn Fn(&mut Schema) + 'a>;

/// What the sources hold: messages with their plain fields and oneof
/// fields (the enum's path), and oneof enums (by `module::Enum`).
#[derive(Default)]
struct Sources {
    messages: BTreeMap<String, SourceMessage>,
    oneofs: BTreeMap<String, BTreeSet<Field>>,
}

fn walk(items: &[Item], module: &str, out: &mut Sources) {
    for item in items {
        match item {
            Item::Mod(m) if !is_cfg_test(&m.attrs) => {
                if let Some((_, inner)) = &m.content {
                    walk(inner, &m.ident.to_string(), out);
                }
            }
            Item::Struct(s) if derives(&s.attrs, "Message") => {
                let mut fields = BTreeSet::new();
                let mut oneofs = Vec::new();
                if let Fields::Named(named) = &s.fields {
                    for f in &named.named {
                        let name = f.ident.as_ref().unwrap().to_string();
                        let attr = prost_attr(&f.attrs).unwrap();
                        match &attr.oneof {
                            Some(path) => oneofs.push((name, path.clone())),
                            None => {
                                fields.insert(field_of(&attr, name, &f.ty, None));
                            }
                        }
                    }
                }
                let previous = out.messages.insert(s.ident.to_string(), (fields, oneofs));
                assert!(previous.is_none(), "two messages named {}", s.ident);
            }
            Item::Enum(e) if derives(&e.attrs, "Oneof") => {
                let mut fields = BTreeSet::new();
                for v in &e.variants {
                    let attr = prost_attr(&v.attrs).unwrap();
                    let ty = match &v.fields {
                        Fields::Unnamed(u) => &u.unnamed.first().unwrap().ty,
                        _ => panic!("a oneof variant holds one value"),
                    };
                    fields.insert(field_of(&attr, member_name(&v.ident.to_string()), ty, None));
                }
                out.oneofs.insert(format!("{module}::{}", e.ident), fields);
            }
            _ => {}
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_string_lossy();
            // Test modules may derive messages of their own.
            if stem != "tests" && !stem.ends_with("_tests") {
                out.push(path);
            }
        }
    }
}

/// The schema of the prost structs in the crate at `crates/<krate>/src`.
fn prost_schema(krate: &str) -> Schema {
    let mut files = Vec::new();
    rust_files(&repo().join("crates").join(krate).join("src"), &mut files);
    files.sort();
    let mut sources = Sources::default();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        walk(&file.items, "", &mut sources);
    }
    let mut schema = Schema::new();
    for (name, (mut fields, oneofs)) in sources.messages {
        for (oneof, path) in oneofs {
            let members = sources
                .oneofs
                .get(&path)
                .unwrap_or_else(|| panic!("{name}: no oneof enum {path}"));
            for member in members {
                fields.insert(Field {
                    oneof: Some(oneof.clone()),
                    ..member.clone()
                });
            }
        }
        schema.insert(name, fields);
    }
    schema
}

/// Every difference between the two schemas, one line each.
fn differences(proto: &Schema, prost: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for name in proto.keys().chain(prost.keys()).collect::<BTreeSet<_>>() {
        match (proto.get(name), prost.get(name)) {
            (Some(_), None) => out.push(format!("{name}: in the .proto, no prost struct")),
            (None, Some(_)) => out.push(format!("{name}: a prost struct, not in the .proto")),
            (Some(a), Some(b)) => {
                for f in a.difference(b) {
                    out.push(format!("{name}: .proto has {f:?}, prost does not"));
                }
                for f in b.difference(a) {
                    out.push(format!("{name}: prost has {f:?}, the .proto does not"));
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn check(file: &str, krate: &str) -> (Schema, Schema) {
    let proto = proto_schema(file);
    let prost = prost_schema(krate);
    let diff = differences(&proto, &prost);
    assert!(
        diff.is_empty(),
        "proto/{file} and {krate} differ:\n{}",
        diff.join("\n")
    );
    (proto, prost)
}

#[test]
fn relay_proto_matches_the_relay_frames() {
    let (proto, _) = check("relay.proto", "tacit-relay-proto");
    assert!(proto.contains_key("ClientFrame") && proto.contains_key("ServerFrame"));
}

#[test]
fn tacit_proto_matches_the_core_messages() {
    let (proto, _) = check("tacit.proto", "tacit");
    for name in [
        "PreKeyBundle",
        "SealedEnvelope",
        "SignedDeviceList",
        "GroupMessage",
    ] {
        assert!(proto.contains_key(name), "{name}");
    }
}

/// The comparison sees each kind of drift: a field missing on one side, a
/// renumbered, retyped or relabelled field, and a message missing.
#[test]
fn every_kind_of_drift_is_reported() {
    let proto = proto_schema("relay.proto");
    let prost = prost_schema("tacit-relay-proto");
    let field = |m: &str, n: u32| proto[m].iter().find(|f| f.number == n).cloned().unwrap();
    let edits: Vec<Edit> = vec![
        Box::new(|s| {
            let f = field("Submit", 4);
            s.get_mut("Submit").unwrap().remove(&f);
        }),
        Box::new(|s| {
            let f = field("Submit", 4);
            let set = s.get_mut("Submit").unwrap();
            set.remove(&f);
            set.insert(Field { number: 5, ..f });
        }),
        Box::new(|s| {
            let f = field("Push", 4);
            let set = s.get_mut("Push").unwrap();
            set.remove(&f);
            set.insert(Field {
                ty: "uint64".into(),
                ..f
            });
        }),
        Box::new(|s| {
            let f = field("FetchBundles", 2);
            let set = s.get_mut("FetchBundles").unwrap();
            set.remove(&f);
            set.insert(Field {
                label: Label::Implicit,
                ..f
            });
        }),
        Box::new(|s| {
            let f = field("ClientFrame", 14);
            let set = s.get_mut("ClientFrame").unwrap();
            set.remove(&f);
            set.insert(Field { oneof: None, ..f });
        }),
        Box::new(|s| {
            s.remove("LinkBlob");
        }),
    ];
    assert!(differences(&proto, &prost).is_empty());
    for (i, edit) in edits.iter().enumerate() {
        let mut changed = proto.clone();
        edit(&mut changed);
        assert!(!differences(&changed, &prost).is_empty(), "edit {i}");
        assert!(!differences(&proto, &{
            let mut p = prost.clone();
            edit(&mut p);
            p
        })
        .is_empty());
    }
}
