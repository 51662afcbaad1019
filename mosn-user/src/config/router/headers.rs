//! Validation of header names and values, and of the header mutation lists
//! (`request_headers_to_add` and friends) of each level.

use http::{HeaderName, HeaderValue};

use super::HeaderAdd;
use super::HeaderOps;
use super::raw::{RawHeaderAdd, RawKeyValue};
use crate::config::diag::{Diag, index, join};

/// The four header mutation lists of one level.
pub(super) fn header_ops(
    path: &str,
    [req_add, resp_add]: [&Option<Vec<RawHeaderAdd>>; 2],
    [req_rm, resp_rm]: [&Option<Vec<String>>; 2],
    d: &mut Diag,
) -> HeaderOps {
    let adds = |key: &str, list: &Option<Vec<RawHeaderAdd>>, d: &mut Diag| {
        let mut out = Vec::new();
        for (i, a) in list.iter().flatten().enumerate() {
            let ap = index(path, key, i);
            d.extra(&ap, &a.extra, RawHeaderAdd::KEYS);
            let hp = join(&ap, "header");
            let Some(h) = &a.header else {
                d.error(
                    &hp,
                    "missing header (e.g. {\"key\": \"x-k\", \"value\": \"v\"})",
                );
                continue;
            };
            d.extra(&hp, &h.extra, RawKeyValue::KEYS);
            let value = h.value.clone().unwrap_or_default();
            let valid_value = header_value(&join(&hp, "value"), &value, d);
            let name = match h.key.as_deref() {
                None | Some("") => {
                    d.error(&join(&hp, "key"), "missing key");
                    None
                }
                Some(k) => header_name(&join(&hp, "key"), k, d),
            };
            if let (Some(name), true) = (name, valid_value) {
                let append = a.append.unwrap_or(false);
                out.push(HeaderAdd {
                    name,
                    value,
                    append,
                });
            }
        }
        out
    };
    let request_add = adds("request_headers_to_add", req_add, d);
    let response_add = adds("response_headers_to_add", resp_add, d);
    let removes = |key: &str, list: &Option<Vec<String>>, d: &mut Diag| {
        let mut out = Vec::new();
        for (i, n) in list.iter().flatten().enumerate() {
            let np = index(path, key, i);
            if key.starts_with("request") && n.eq_ignore_ascii_case("host") {
                d.error(&np, "the host header cannot be removed");
            } else if let Some(name) = header_name(&np, n, d) {
                out.push(name);
            }
        }
        out
    };
    HeaderOps {
        request_add,
        request_remove: removes("request_headers_to_remove", req_rm, d),
        response_add,
        response_remove: removes("response_headers_to_remove", resp_rm, d),
    }
}

/// A valid header name, in lower case.
pub(super) fn header_name(path: &str, name: &str, d: &mut Diag) -> Option<String> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(n) => Some(n.as_str().to_owned()),
        Err(_) => {
            d.error(path, format!("invalid header name {name:?}"));
            None
        }
    }
}

pub(super) fn header_value(path: &str, value: &str, d: &mut Diag) -> bool {
    let ok = HeaderValue::from_str(value).is_ok();
    if !ok {
        d.error(
            path,
            format!("invalid header value {value:?} (control characters are not allowed)"),
        );
    }
    ok
}
