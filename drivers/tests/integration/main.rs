//! drivers integration tests: readers against images built by `hw-fixtures/` scripts.

mod helper;
