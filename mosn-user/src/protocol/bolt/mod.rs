//! SOFARPC Bolt v1/v2 (being written).
