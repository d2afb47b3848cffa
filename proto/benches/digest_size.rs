//! Reports what an index digest costs on the wire:
//! `cargo bench -p pacmesh-proto --bench digest_size`.
//! The same targets are asserted in `tests/sizes.rs`.

use std::time::Instant;

use pacmesh_proto::{
    decode, encode_frame, name_hash, Delta, Digest, Message, PackageSet, MAX_FRAME,
};

fn realistic_name(i: usize) -> String {
    format!("name{i}-1.{i}-1-x86_64.pkg.tar.zst")
}

fn frame_len(msg: &Message) -> usize {
    encode_frame(msg, MAX_FRAME).map_or(usize::MAX, |f| f.len())
}

fn main() {
    println!("digest (framed), names like {}", realistic_name(42));
    for count in [100, 1_000, 10_000, 100_000] {
        let names: Vec<String> = (0..count).map(realistic_name).collect();
        let started = Instant::now();
        let packages = PackageSet::from_names(names.iter().map(String::as_str));
        let hashed = started.elapsed();
        let raw: usize = names.iter().map(|n| n.len() + 1).sum();
        let msg = Message::Digest(Digest { seq: 1, packages });
        let started = Instant::now();
        let Ok(frame) = encode_frame(&msg, MAX_FRAME) else {
            println!("{count:>7} packages: over the frame limit");
            continue;
        };
        let encoded = started.elapsed();
        let started = Instant::now();
        let ok = decode(&frame[4..]).is_ok_and(|m| m == msg);
        let decoded = started.elapsed();
        println!(
            "{count:>7} packages: {:>8} bytes = {:.2} bytes/package (raw names {:.1}); \
             hash {hashed:?}, encode {encoded:?}, decode {decoded:?}, round-trip {ok}",
            frame.len(),
            frame.len() as f64 / count as f64,
            raw as f64 / count as f64,
        );
    }
    let add = |seq: u64| {
        Message::Delta(Delta {
            seq,
            added: vec![name_hash(&realistic_name(10_001))],
            removed: vec![],
        })
    };
    let replace = Message::Delta(Delta {
        seq: 1000,
        added: vec![name_hash(&realistic_name(10_002))],
        removed: vec![name_hash(&realistic_name(2))],
    });
    println!(
        "delta adding one package (framed): {} bytes at seq 1, {} bytes at seq 2^32",
        frame_len(&add(1)),
        frame_len(&add(1 << 32))
    );
    println!(
        "delta replacing one version by another (framed): {} bytes",
        frame_len(&replace)
    );
}
