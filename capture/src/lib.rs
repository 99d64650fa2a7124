//! # apitap-capture
//!
//! Bytes in, ordered byte streams out. This crate owns everything below the application layer:
//! packet sources ([`source`]: libpcap live interfaces, pcap/pcapng files, and a UDP listener
//! for VXLAN/Geneve mirror streams), link, network and tunnel decoding ([`decode`], [`tunnel`],
//! with IP fragment reassembly in [`frag`]), connection tracking ([`flow`]) and passive TCP
//! reassembly ([`reassembly`], [`seq`]; RFC 9293). It knows nothing of HTTP: the application
//! layer plugs in through [`flow::FlowHandler`].
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod decode;
pub mod flow;
pub mod frag;
pub mod pace;
pub mod reassembly;
pub mod seq;
pub mod source;
pub mod tunnel;
