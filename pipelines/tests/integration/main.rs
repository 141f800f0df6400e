//! pipelines integration tests: pipelines against real devices and tools.

mod erase;
