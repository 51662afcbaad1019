//! Decoding of Dubbo frames into [`XFrame`]s: the bytes are split off whole; for a hessian2
//! request the four strings leading its body (framework version, interface, service version,
//! method) become header fields, service and method, and nothing after them is read.

use bytes::BytesMut;

use super::frame::{
    HEADER_DUBBO, HEADER_LEN, HEADER_METHOD, HEADER_SERVICE, HEADER_VERSION, Header,
    SERIALIZATION_HESSIAN2,
};
use super::hessian::read_string;
use crate::protocol::DecodeError;
use crate::protocol::xprotocol::{Text, XFrame, whole_frame};

/// Decodes the next frame from the front of `src` (see
/// [`crate::protocol::xprotocol::XProtocol::decode`]). Nothing is consumed unless a whole,
/// valid frame is returned. Bytes that cannot start a frame (a wrong magic) are an error as
/// soon as they are seen, before the rest of the header is in.
pub fn decode(src: &mut BytesMut, max_frame: usize) -> Result<Option<XFrame>, DecodeError> {
    let Some(header) = Header::parse(src)? else {
        return Ok(None);
    };
    let Some(total) = whole_frame(src, header.total(), max_frame)? else {
        return Ok(None);
    };

    let mut headers = Vec::new();
    let mut service = None;
    let mut method = None;
    if header.is_request() && !header.is_event() && header.serialization() == SERIALIZATION_HESSIAN2
    {
        let body = src.get(HEADER_LEN..total).unwrap_or_default();
        let names = [HEADER_DUBBO, HEADER_SERVICE, HEADER_VERSION, HEADER_METHOD];
        let mut at = 0;
        let mut values: [Option<Text>; 4] = Default::default();
        for (name, value) in names.iter().zip(values.iter_mut()) {
            let (text, next) = read_string(body, at, HEADER_LEN).map_err(|reason| {
                DecodeError::malformed("dubbo request body", format!("{name} string: {reason}"))
            })?;
            *value = text;
            at = next;
        }
        let [dubbo, svc, version, meth] = values;
        service = svc.clone();
        method = meth.clone();
        // A null field (Dubbo writes a null service version as `N`) is left out.
        headers = names
            .into_iter()
            .zip([dubbo, svc, version, meth])
            .filter_map(|(name, v)| Some((Text::Static(name), v?)))
            .collect();
    }

    Ok(Some(XFrame {
        kind: header.kind(),
        request_id: header.request_id,
        status: if header.is_request() {
            0
        } else {
            u16::from(header.status)
        },
        // Dubbo's timeout travels in the attachments, which are not decoded.
        timeout: None,
        raw: src.split_to(total),
        headers,
        service,
        method,
        headers_changed: false,
    }))
}
