//! The one request type the layers above the codecs see ([`Request`]): the router matches
//! and hashes on it, and stream filters read and change it, for HTTP heads and X-Protocol
//! (RPC) frames alike (and HTTP/2 heads next), so no layer fakes one protocol's request from
//! another's.
//!
//! Header names reach the router pre-parsed as `HeaderName`s (lower case, as validated), so
//! an HTTP lookup is a `HeaderMap` lookup with no allocation. RPC header keys are
//! case-sensitive on the wire, but the config lowers the names it is given, so an RPC frame
//! compares keys ASCII case-insensitively and takes the first field that matches.

use http::request::Parts;
use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, header as hdr};

use super::xprotocol::XFrame;

/// A request of any protocol, as routing and stream filters see it.
pub trait Request: Send {
    /// `Host` / `:authority`, for the virtual host; RPC: `None` (the `*` virtual host).
    fn host(&self) -> Option<&str>;

    /// The path without the query; RPC: `None` (a route with a path condition does not
    /// match, except a `prefix` of `/`, which matches everything as in MOSN and Envoy).
    fn path(&self) -> Option<&str>;

    /// The path with the query (the `:path` pseudo-header).
    fn path_and_query(&self) -> Option<&str>;

    /// The query, without `?`.
    fn query(&self) -> Option<&str>;

    /// The method (`:method`); RPC: the frame's method.
    fn method(&self) -> Option<&str>;

    /// The scheme (`:scheme`); HTTP: `http` unless the request line says otherwise.
    fn scheme(&self) -> Option<&str>;

    /// Whether the request has header `name` (whatever its value).
    fn has_header(&self, name: &HeaderName) -> bool;

    /// Whether a value of header `name` satisfies `f`. HTTP: every value of the name, as
    /// text (`HeaderValue::to_str`); RPC: the first field of that name, if UTF-8.
    fn any_header(&self, name: &HeaderName, f: &mut dyn FnMut(&str) -> bool) -> bool;

    /// The first value of header `name` as text (`cluster_header`); `None` when absent or
    /// not text.
    fn header(&self, name: &HeaderName) -> Option<&str>;

    /// The first value of header `name` as bytes (header hash policies).
    fn header_bytes(&self, name: &HeaderName) -> Option<&[u8]>;

    /// The value of cookie `name` (cookie hash policies); RPC has no cookies.
    fn cookie(&self, name: &str) -> Option<&str> {
        let _ = name;
        None
    }

    /// Every value of header `name` joined with `,` (Envoy's header matching), lossily as
    /// text; `None` when absent. RPC: the first field of that name.
    fn joined_header(&self, name: &HeaderName) -> Option<Cow<'_, str>>;

    /// Sets header `name`, replacing every value of it (an RPC frame is then re-encoded).
    fn set_header(&mut self, name: &HeaderName, value: &HeaderValue);

    /// Removes every value of header `name`.
    fn remove_header(&mut self, name: &HeaderName);
}

impl Request for Parts {
    fn host(&self) -> Option<&str> {
        self.headers
            .get(hdr::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| self.uri.authority().map(|a| a.as_str()))
    }

    fn path(&self) -> Option<&str> {
        Some(self.uri.path())
    }

    fn path_and_query(&self) -> Option<&str> {
        self.uri.path_and_query().map(|p| p.as_str())
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn method(&self) -> Option<&str> {
        Some(self.method.as_str())
    }

    fn scheme(&self) -> Option<&str> {
        Some(self.uri.scheme_str().unwrap_or("http"))
    }

    fn has_header(&self, name: &HeaderName) -> bool {
        self.headers.contains_key(name)
    }

    fn any_header(&self, name: &HeaderName, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(&mut *f))
    }

    fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn header_bytes(&self, name: &HeaderName) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(hdr::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim_matches('"'))
    }

    fn joined_header(&self, name: &HeaderName) -> Option<Cow<'_, str>> {
        let mut values = self.headers.get_all(name).iter();
        let first = String::from_utf8_lossy(values.next()?.as_bytes());
        let rest: Vec<_> = values
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect();
        if rest.is_empty() {
            return Some(first);
        }
        let mut all = first.into_owned();
        for v in rest {
            all.push(',');
            all.push_str(&v);
        }
        Some(Cow::Owned(all))
    }

    fn set_header(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.headers.insert(name.clone(), value.clone());
    }

    fn remove_header(&mut self, name: &HeaderName) {
        self.headers.remove(name);
    }
}

/// The value of the first field of `frame` whose key is `name` (ASCII case-insensitive).
fn rpc_header<'a>(frame: &'a XFrame, name: &HeaderName) -> Option<&'a [u8]> {
    let name = name.as_str().as_bytes();
    frame
        .headers
        .iter()
        .find(|(k, _)| frame.text(k).eq_ignore_ascii_case(name))
        .map(|(_, v)| frame.text(v))
}

impl Request for XFrame {
    fn host(&self) -> Option<&str> {
        None
    }

    fn path(&self) -> Option<&str> {
        None
    }

    fn path_and_query(&self) -> Option<&str> {
        None
    }

    fn query(&self) -> Option<&str> {
        None
    }

    fn method(&self) -> Option<&str> {
        XFrame::method(self).and_then(|m| std::str::from_utf8(m).ok())
    }

    fn scheme(&self) -> Option<&str> {
        None
    }

    fn has_header(&self, name: &HeaderName) -> bool {
        rpc_header(self, name).is_some()
    }

    fn any_header(&self, name: &HeaderName, f: &mut dyn FnMut(&str) -> bool) -> bool {
        Request::header(self, name).is_some_and(f)
    }

    fn header(&self, name: &HeaderName) -> Option<&str> {
        rpc_header(self, name).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn header_bytes(&self, name: &HeaderName) -> Option<&[u8]> {
        rpc_header(self, name)
    }

    fn joined_header(&self, name: &HeaderName) -> Option<Cow<'_, str>> {
        rpc_header(self, name).map(String::from_utf8_lossy)
    }

    fn set_header(&mut self, name: &HeaderName, value: &HeaderValue) {
        XFrame::set_header(
            self,
            name.as_str(),
            Bytes::copy_from_slice(value.as_bytes()),
        );
    }

    fn remove_header(&mut self, name: &HeaderName) {
        if rpc_header(self, name).is_some() {
            XFrame::remove_header(self, name.as_str());
        }
    }
}
