//! SQLite storage for tacit sessions, records sealed at rest.
