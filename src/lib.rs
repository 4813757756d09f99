//! Test, bench and example host for ortho.
