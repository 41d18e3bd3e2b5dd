//! A throwaway PostgreSQL database per test: the test kit's.

// Not every test binary that declares `mod support;` uses it.
#[allow(unused_imports)]
pub use kanade_testkit::TestDatabase;
