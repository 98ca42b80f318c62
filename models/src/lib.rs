//! agentry-models (see DESIGN.md).
#![warn(missing_docs)]
