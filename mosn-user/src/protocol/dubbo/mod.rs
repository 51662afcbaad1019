//! Dubbo (being written).
