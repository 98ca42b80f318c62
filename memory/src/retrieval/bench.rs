//! Retrieval benchmark, for `agent bench retrieval`.
