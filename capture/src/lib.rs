//! apitap-capture.
