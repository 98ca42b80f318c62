//! agentry-agents (see DESIGN.md).
#![warn(missing_docs)]
