//! apitap daemon library.
