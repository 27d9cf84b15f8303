//! Benchmarks only: `cargo bench -p tacit-bench` runs Tacit and vodozemac
//! (Olm) side by side on the same operations, with the primitive floor, and
//! prints a table of ratios. See `docs/PERFORMANCE.md`.
