//! What sealing one key costs next to the X25519 work it cannot avoid (issue: "seal of one
//! key vs X25519 keygen + DH", goal ≥ 0.6×).
//!
//! Sealing is HPKE base mode: one ephemeral X25519 key pair, one Diffie-Hellman, HKDF and
//! AES-256-GCM, then the envelope (key id, base64). Opening is one Diffie-Hellman, HKDF and
//! AES-256-GCM. The baselines do the curve work alone with the crate HPKE itself uses
//! (`x25519-dalek`: `StaticSecret` + `PublicKey::from` + `diffie_hellman`), in the same
//! process, interleaved round by round so a busy machine slows both alike. The figure is
//! the throughput ratio (1.0 = sealing costs nothing beyond the curve).
//!
//! Prints its lines; with `SB_BENCH_ROWS=<file>` also appends them as table rows (tab
//! separated: figure, measured, baseline, ratio, goal, met) for `make bench`.

use sb_core::seal::{Aad, KeyPair, Purpose, SecretValue, open, seal};
use std::hint::black_box;
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

const ROUNDS: usize = 7;
const PER_ROUND: usize = 2_000;

/// Operations per second of `f` over `n` calls.
fn rate(n: usize, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / started.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Appends one row of the `make bench` table.
fn row(figure: &str, measured: String, baseline: String, ratio: f64, goal: &str, met: bool) {
    let line = format!("{figure}\t{measured}\t{baseline}\t{ratio:.2}x\t{goal}\t{}\n", if met { "yes" } else { "NO" });
    if let Some(path) = std::env::var_os("SB_BENCH_ROWS") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("SB_BENCH_ROWS opens");
        file.write_all(line.as_bytes()).expect("SB_BENCH_ROWS is writable");
    }
}

fn main() {
    let recipient = KeyPair::generate();
    let aad = Aad::new("2f1c4d8e-0000-4000-8000-000000000001", "edge/vault:team-a/db", "password");
    let value = SecretValue::new(b"correct horse battery staple".to_vec());
    let envelope = seal(&recipient.public, Purpose::ReadDelivery, &aad, &value).expect("seals");
    let peer = PublicKey::from(&StaticSecret::from(rand::random::<[u8; 32]>()));
    let own = StaticSecret::from(rand::random::<[u8; 32]>());

    let (mut seals, mut opens, mut keygen_dh, mut dh) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        seals.push(rate(PER_ROUND, || {
            black_box(seal(&recipient.public, Purpose::ReadDelivery, &aad, &value).expect("seals"));
        }));
        keygen_dh.push(rate(PER_ROUND, || {
            // What the sender's side of HPKE must do at least: a fresh key pair and one DH.
            let ephemeral = StaticSecret::from(rand::random::<[u8; 32]>());
            black_box(PublicKey::from(&ephemeral));
            black_box(ephemeral.diffie_hellman(&peer));
        }));
        opens.push(rate(PER_ROUND, || {
            black_box(open(&recipient, Purpose::ReadDelivery, &aad, &envelope).expect("opens"));
        }));
        dh.push(rate(PER_ROUND, || {
            black_box(own.diffie_hellman(&peer));
        }));
    }
    let (seal_rate, keygen_dh_rate) = (median(seals), median(keygen_dh));
    let (open_rate, dh_rate) = (median(opens), median(dh));
    let seal_ratio = seal_rate / keygen_dh_rate;
    let open_ratio = open_rate / dh_rate;
    println!(
        "seal one key: {seal_rate:>9.0}/s | X25519 keygen+DH: {keygen_dh_rate:>9.0}/s | ratio {seal_ratio:.2}x | goal >= 0.6x: {}",
        if seal_ratio >= 0.6 { "met" } else { "MISSED" }
    );
    println!("open one key: {open_rate:>9.0}/s | X25519 DH:        {dh_rate:>9.0}/s | ratio {open_ratio:.2}x");
    row(
        "seal one key (HPKE)",
        format!("{seal_rate:.0}/s"),
        format!("{keygen_dh_rate:.0}/s X25519 keygen+DH"),
        seal_ratio,
        ">= 0.6x",
        seal_ratio >= 0.6,
    );
    row(
        "open one key (HPKE)",
        format!("{open_rate:.0}/s"),
        format!("{dh_rate:.0}/s X25519 DH"),
        open_ratio,
        ">= 0.6x",
        open_ratio >= 0.6,
    );
}
