//! Upstream resilience configuration of a cluster: active health checks (`health_check`),
//! outlier detection (`outlier_detection`) and circuit breakers (`circuit_breakers`).
//!
//! Raw shapes, validated model types and their validation live together in this file.

use serde::Serialize;
use serde_json::Value;

use super::diag::Diag;

/// `health_check`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheckConfig {}

/// `outlier_detection`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierConfig {}

/// `circuit_breakers` (absent: Envoy's defaults).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CircuitBreakersConfig {}

pub(super) fn health_check(
    value: Option<&Value>,
    path: &str,
    d: &mut Diag,
) -> Option<HealthCheckConfig> {
    let _ = (value, path, d);
    None
}

pub(super) fn outlier_detection(
    value: Option<&Value>,
    path: &str,
    d: &mut Diag,
) -> Option<OutlierConfig> {
    let _ = (value, path, d);
    None
}

pub(super) fn circuit_breakers(
    value: Option<&Value>,
    path: &str,
    d: &mut Diag,
) -> CircuitBreakersConfig {
    let _ = (value, path, d);
    CircuitBreakersConfig::default()
}
