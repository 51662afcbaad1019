//! Header mutations (`request_headers_to_add` and friends) of the route, virtual host and
//! router levels.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::protocol::xprotocol::XFrame;

use crate::config::router::{HeaderAdd, HeaderOps};

/// One level's mutations, compiled.
#[derive(Debug, Default)]
pub(super) struct HeaderMutations {
    request_add: Vec<Add>,
    request_remove: Vec<HeaderName>,
    response_add: Vec<Add>,
    response_remove: Vec<HeaderName>,
}

#[derive(Debug)]
struct Add {
    name: HeaderName,
    value: HeaderValue,
    append: bool,
}

/// Which message a mutation list applies to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    Request,
    Response,
}

impl HeaderMutations {
    /// `cfg` has been validated; an entry that does not convert (impossible then) is skipped.
    pub fn new(cfg: &HeaderOps) -> HeaderMutations {
        let adds = |list: &[HeaderAdd]| {
            list.iter()
                .filter_map(|a| {
                    Some(Add {
                        name: HeaderName::from_bytes(a.name.as_bytes()).ok()?,
                        value: HeaderValue::from_str(&a.value).ok()?,
                        append: a.append,
                    })
                })
                .collect()
        };
        let names = |list: &[String]| {
            list.iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect()
        };
        HeaderMutations {
            request_add: adds(&cfg.request_add),
            request_remove: names(&cfg.request_remove),
            response_add: adds(&cfg.response_add),
            response_remove: names(&cfg.response_remove),
        }
    }

    fn lists(&self, side: Side) -> (&[Add], &[HeaderName]) {
        match side {
            Side::Request => (&self.request_add, &self.request_remove),
            Side::Response => (&self.response_add, &self.response_remove),
        }
    }
}

/// Applies `levels`, most specific first (route, virtual host, router): every removal, then
/// the additions level by level. A replacing addition (`append: false`) is skipped when a
/// more specific level adds the same header, so the most specific level wins.
pub(super) fn apply(levels: [&HeaderMutations; 3], side: Side, headers: &mut HeaderMap) {
    for level in levels {
        for name in level.lists(side).1 {
            headers.remove(name);
        }
    }
    for (i, level) in levels.iter().enumerate() {
        for add in level.lists(side).0 {
            if add.append {
                headers.append(add.name.clone(), add.value.clone());
                continue;
            }
            let overridden = levels[..i]
                .iter()
                .any(|inner| inner.lists(side).0.iter().any(|a| a.name == add.name));
            if !overridden {
                headers.insert(add.name.clone(), add.value.clone());
            }
        }
    }
}

/// [`apply`] to an RPC frame's header fields (keys as configured, lower-cased like HTTP
/// names). The frame is re-encoded when anything changed.
pub(super) fn apply_frame(levels: [&HeaderMutations; 3], side: Side, frame: &mut XFrame) {
    for level in levels {
        for name in level.lists(side).1 {
            frame.remove_header(name.as_str());
        }
    }
    for (i, level) in levels.iter().enumerate() {
        for add in level.lists(side).0 {
            let value = Bytes::copy_from_slice(add.value.as_bytes());
            if add.append && frame.header(add.name.as_str()).is_some() {
                frame.append_header(add.name.as_str(), value);
                continue;
            }
            let overridden = levels[..i]
                .iter()
                .any(|inner| inner.lists(side).0.iter().any(|a| a.name == add.name));
            if !overridden {
                frame.set_header(add.name.as_str(), value);
            }
        }
    }
}

impl HeaderMutations {
    /// Whether this level changes nothing on `side` (the RPC path then skips the frame).
    pub fn is_empty(&self, side: Side) -> bool {
        let (add, remove) = self.lists(side);
        add.is_empty() && remove.is_empty()
    }
}
