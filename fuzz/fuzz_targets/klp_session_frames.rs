//! What an authenticated peer may send after the handshake: frames whose decrypted contents are
//! arbitrary (any flag byte, pieces of any length, full pieces that claim more follows, envelopes that
//! are not tokens or are too large). The receiving session must end in an error, never a panic, a hang
//! or an allocation beyond its limit.
#![no_main]

use futures::executor::block_on;
use kai_klp::Identity;
use kai_klp::session::{accept, connect, memory_pair};
use libfuzzer_sys::fuzz_target;

/// The bytes a full piece carries after its flag byte (65,535 − 16-byte tag − 1).
const FULL_PIECE: usize = 65_518;

/// Splits the input into frame plaintexts: a length byte pair then that many bytes, or a marker byte
/// 0xFF followed by a fill byte, standing for a full piece flagged "more follows" (so that the fuzzer
/// reaches the joining of pieces without 64 KiB inputs).
fn frames(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while frames.len() < 40 {
        match data {
            [0xFF, fill, rest @ ..] => {
                let mut piece = vec![1u8];
                piece.resize(1 + FULL_PIECE, *fill);
                frames.push(piece);
                data = rest;
            }
            [low, high, rest @ ..] => {
                let length = usize::from(u16::from_le_bytes([*low, *high])).min(rest.len());
                frames.push(rest[..length].to_vec());
                data = &rest[length..];
            }
            _ => break,
        }
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    let (ours, theirs) = memory_pair();
    block_on(async {
        let (client, server) = futures::join!(
            connect(Identity::from_secret_bytes(&[1; 32]), None, theirs),
            accept(Identity::from_secret_bytes(&[2; 32]), ours)
        );
        let (Ok(mut peer), Ok(server)) = (client, server) else {
            return;
        };
        let mut server = server.with_max_message_bytes(200_000);
        for frame in frames(data) {
            if peer.send_raw_frame(&frame).await.is_err() {
                break;
            }
        }
        drop(peer);
        while server.recv().await.is_ok() {}
    });
});
