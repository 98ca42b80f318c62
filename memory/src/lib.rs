//! agentry-memory (see DESIGN.md).
#![warn(missing_docs)]
