//! Data on its way out of an HTTP/2 stream, waiting for flow-control capacity. The pumps run
//! as branches of `select!`s, so any await may be cancelled; the data lives here, not in the
//! future, and only what h2 took leaves it: a cancelled flush loses nothing and the next one
//! goes on where it stopped.

use std::future::poll_fn;

use bytes::Bytes;
use h2::SendStream;

/// What waits to be sent on one stream.
#[derive(Debug, Default)]
pub(in crate::proxy) struct Outbox {
    data: Bytes,
    /// END_STREAM goes with the last of `data`.
    end: bool,
    /// Something is queued (an empty DATA frame carrying END_STREAM counts).
    queued: bool,
    /// Window to give back to the source once `data` is out.
    release: usize,
}

impl Outbox {
    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        !self.queued
    }

    /// Queues `data` (with END_STREAM if `end`); `release` is what the source may be given
    /// back when it is sent. Only when empty.
    pub fn put(&mut self, data: Bytes, end: bool, release: usize) {
        debug_assert!(self.is_empty());
        self.data = data;
        self.end = end;
        self.queued = true;
        self.release = release;
    }

    /// Sends what waits as the peer's window allows. `Ok(Some(release))` once all of it is
    /// out (with `release` the window to give back to the source); cancel-safe.
    pub async fn flush(&mut self, s: &mut SendStream<Bytes>) -> Result<usize, h2::Error> {
        while !self.data.is_empty() {
            s.reserve_capacity(self.data.len());
            let cap = match poll_fn(|cx| s.poll_capacity(cx)).await {
                Some(r) => r?,
                None => return Err(h2::Error::from(h2::Reason::CANCEL)),
            };
            if cap == 0 {
                continue;
            }
            // No await from here on: what is split off is sent.
            let piece = self.data.split_to(cap.min(self.data.len()));
            s.send_data(piece, self.end && self.data.is_empty())?;
            if self.data.is_empty() {
                return Ok(self.done());
            }
        }
        if self.queued && self.end {
            s.send_data(Bytes::new(), true)?;
        }
        Ok(self.done())
    }

    fn done(&mut self) -> usize {
        self.queued = false;
        self.end = false;
        std::mem::take(&mut self.release)
    }

    /// Sends `data` now, waiting for capacity as needed (for callers not in a `select!`).
    pub async fn send(s: &mut SendStream<Bytes>, data: Bytes, end: bool) -> Result<(), h2::Error> {
        let mut o = Outbox::default();
        o.put(data, end, 0);
        o.flush(s).await.map(drop)
    }
}
