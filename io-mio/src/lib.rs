//! Not built yet: this crate is filled by a later issue (see the README's status table).
//! It exports nothing.
