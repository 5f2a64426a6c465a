//! Per-user networks: bridges, per-sandbox veth pairs, IP allocation and isolation rules.
