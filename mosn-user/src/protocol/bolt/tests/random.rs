//! A fixed-seed loop of random and mutated inputs: no input makes the codec panic.

use super::*;

/// xorshift64*: a fixed-seed generator for the no-panic loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5eed_b017_0000_0001);
    let seeds = [
        Wire::request().bytes(),
        Wire::response().bytes(),
        Wire::request().v2(1, 1).bytes(),
        Wire::response().v2(1, 0).bytes(),
        BOLT.heartbeat(3).to_vec(),
    ];
    let (mut frames, mut errors) = (0, 0);
    for round in 0..4000 {
        let mut input = if round % 2 == 0 {
            // A valid frame with a few bytes changed and maybe cut short or extended.
            let mut b = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            if rng.below(4) == 0 {
                b.truncate(rng.below(b.len() + 1));
            }
            b.extend((0..rng.below(8)).map(|_| rng.next() as u8));
            b
        } else {
            let mut b: Vec<u8> = (0..rng.below(96)).map(|_| rng.next() as u8).collect();
            if let Some(first) = b.first_mut() {
                *first = 1 + (*first & 1);
            }
            b
        };
        if rng.below(4) == 0 {
            input.extend(Wire::request().bytes());
        }
        let _ = BOLT.matches(&input);
        let _ = BOLT.codec_error_reply(&input);
        let mut src = BytesMut::from(&input[..]);
        for _ in 0..input.len() + 1 {
            match BOLT.decode(&mut src, 4096) {
                Ok(Some(mut f)) => {
                    frames += 1;
                    let _ = (f.service(), f.method(), header_pairs(&f));
                    let _ = BOLT.heartbeat_reply(&f);
                    let _ = BOLT.hijack(&f, Hijack::Codec, "");
                    BOLT.set_request_id(&mut f, rng.next());
                    f.set_header("k", Bytes::from_static(b"v"));
                    let mut out = BytesMut::new();
                    BOLT.encode(&f, &mut out);
                    let again = BOLT
                        .decode(&mut out, usize::MAX)
                        .expect("re-encoded frames decode");
                    assert!(again.is_some() && out.is_empty());
                }
                Ok(None) => break,
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    // The loop exercised both outcomes.
    assert!(
        frames > 100 && errors > 100,
        "{frames} frames, {errors} errors"
    );
}
