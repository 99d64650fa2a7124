//! (being written) Kafka sink.

/// Kafka producer settings from the command line (and, later, the `[kafka]` config section).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KafkaArgs {}
