//! Session dispatch. Being written.
