//! `tacit-chat group ...`: groups from the command line, and the group
//! lines of `recv` and of the interactive chat.

use clap::Subcommand;
use tacit::Address;
use tacit_client::{Client, Event, GroupInfo, IncomingGroupMessage};

use crate::sanitize;

/// The group commands.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCmd {
    /// Create group NAME with this user (its admin) and the MEMBERs.
    Create {
        /// The group's name (its title; unique among this user's groups).
        name: String,
        /// The other members' user names.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Add USER to GROUP (an admin only).
    Add {
        /// The group's name, or its id (64 hex digits).
        group: String,
        /// The user to add.
        user: String,
    },
    /// Remove USER from GROUP (an admin only): USER reads nothing sent
    /// after it.
    Remove {
        /// The group's name, or its id (64 hex digits).
        group: String,
        /// The member to remove.
        user: String,
    },
    /// Leave GROUP.
    Leave {
        /// The group's name, or its id (64 hex digits).
        group: String,
    },
    /// Send TEXT to every member of GROUP, in one upload.
    Send {
        /// The group's name, or its id (64 hex digits).
        group: String,
        /// The text.
        text: String,
    },
    /// List this user's groups with their members and roles.
    List,
}

/// Runs a group command; returns the lines to print on stdout.
pub(crate) async fn run(client: &Client, cmd: &GroupCmd) -> anyhow::Result<Vec<String>> {
    Ok(match cmd {
        GroupCmd::Create { name, members } => {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            let group = client.create_group(name, &members).await?;
            vec![format!("created {}", info_line(&group))]
        }
        GroupCmd::Add { group, user } => {
            let group = client.add_group_member(group, user).await?;
            vec![info_line(&group)]
        }
        GroupCmd::Remove { group, user } => {
            let group = client.remove_group_member(group, user).await?;
            vec![info_line(&group)]
        }
        GroupCmd::Leave { group } => {
            client.leave_group(group).await?;
            vec![format!("left {}", sanitize(group))]
        }
        GroupCmd::Send { group, text } => {
            let sent = client.send_group_text(group, text).await?;
            let devices: Vec<String> = sent.recipients.iter().map(ToString::to_string).collect();
            eprintln!(
                "sent to {} ({} bytes uploaded once)",
                devices.join(", "),
                sent.uploaded_bytes
            );
            Vec::new()
        }
        GroupCmd::List => client.groups().await?.iter().map(info_line).collect(),
    })
}

/// A group as listed: `TITLE (epoch N, id HEX…): alice (admin), bob`,
/// with `[left]` for a group this user is no longer in.
pub(crate) fn info_line(group: &GroupInfo) -> String {
    let members: Vec<String> = group
        .members
        .iter()
        .map(|m| {
            if m.admin {
                format!("{} (admin)", sanitize(&m.user_id))
            } else {
                sanitize(&m.user_id)
            }
        })
        .collect();
    format!(
        "{} (epoch {}, id {}){}: {}",
        sanitize(&group.title),
        group.epoch,
        hex(&group.id),
        if group.active { "" } else { " [left]" },
        members.join(", ")
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A group message as printed, sanitized: `[TITLE] NAME: TEXT`, or
/// `[TITLE] you (on NAME.N): TEXT` for this user's other device.
pub(crate) fn message_line(me: &Address, m: &IncomingGroupMessage) -> String {
    format!(
        "[{}] {}",
        sanitize(&m.title),
        crate::message_line(me, &m.sender, &m.text)
    )
}

/// Reports a group event other than a message on stderr; `false` if the
/// event is not a group event.
pub(crate) fn note(event: &Event) -> bool {
    match event {
        Event::GroupChanged {
            title,
            by,
            description,
            active,
            ..
        } => {
            eprintln!(
                "* [{}] {} by {}{}",
                sanitize(title),
                sanitize(description),
                sanitize(&by.to_string()),
                if *active {
                    ""
                } else {
                    " (you are no longer a member)"
                }
            );
            true
        }
        Event::GroupRefused { reason, .. } => {
            eprintln!(
                "* a group message or change was refused: {}",
                sanitize(&reason.to_string())
            );
            true
        }
        _ => false,
    }
}
