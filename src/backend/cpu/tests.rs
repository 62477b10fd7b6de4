//! Backend-level tests.
