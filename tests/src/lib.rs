//! Cross-crate tests live in `tests/tests/`. This library only doctests the README.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
