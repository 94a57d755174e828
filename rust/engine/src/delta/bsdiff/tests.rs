use super::*;

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Low-entropy bytes, like text or code: few distinct values, repeated words.
    fn texty(&mut self, n: usize) -> Vec<u8> {
        let words: Vec<Vec<u8>> = (0..32).map(|_| {
            let l = 1 + self.below(8);
            (0..l).map(|_| b'a' + self.below(6) as u8).collect()
        }).collect();
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&words[self.below(words.len())]);
            out.push(b' ');
        }
        out.truncate(n);
        out
    }
}

/// Edits `data` the way new versions differ from old ones: byte changes, insertions, deletions,
/// moved and duplicated blocks.
fn mutate(rng: &mut Rng, data: &[u8], edits: usize) -> Vec<u8> {
    let mut v = data.to_vec();
    for _ in 0..edits {
        let len = v.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = v[i].wrapping_add(1 + rng.below(255) as u8);
            }
            1 => {
                let i = rng.below(len + 1);
                let ins = { let n = 1 + rng.below(64); rng.bytes(n) };
                v.splice(i..i, ins);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(64)).min(len - i);
                v.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(len / 4 + 1)).min(len - i);
                let block: Vec<u8> = v.drain(i..i + n).collect();
                let j = rng.below(v.len() + 1);
                v.splice(j..j, block);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(256)).min(len - i);
                let block = v[i..i + n].to_vec();
                let j = rng.below(len + 1);
                v.splice(j..j, block);
            }
            _ if len > 0 => {
                // Shift a run of 4-byte "addresses", as relinking does.
                let i = rng.below(len);
                let n = (4 * (1 + rng.below(32))).min(len - i) / 4 * 4;
                let delta = 1 + rng.below(16) as u32;
                for c in v[i..i + n].chunks_exact_mut(4) {
                    let x = u32::from_le_bytes(c.try_into().unwrap()).wrapping_add(delta);
                    c.copy_from_slice(&x.to_le_bytes());
                }
            }
            _ => v.extend({ let n = 1 + rng.below(16); rng.bytes(n) }),
        }
    }
    v
}

fn apply_slices(old: &[u8], p: &PatchStreams, new_len: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let (mut c, mut d, mut e) = (&p.control[..], &p.diff[..], &p.extra[..]);
    let n = apply(old, old.len() as u64, &mut c, &mut d, &mut e, new_len, &mut out)?;
    assert_eq!(n, out.len() as u64);
    Ok(out)
}

/// Diffs, applies both ways, checks the output and that apply consumed exactly the streams.
fn roundtrip(old: &[u8], new: &[u8]) -> PatchStreams {
    let p = diff(old, new);
    assert_eq!(p.diff.len() + p.extra.len(), new.len(), "every new byte is in diff or extra");
    let mut out = Vec::new();
    let (mut c, mut d, mut e) = (&p.control[..], &p.diff[..], &p.extra[..]);
    let n = apply(old, old.len() as u64, &mut c, &mut d, &mut e, new.len() as u64, &mut out).unwrap();
    assert_eq!(n, new.len() as u64);
    assert!(out == new, "round trip differs (old {} new {} bytes)", old.len(), new.len());
    assert!(c.is_empty() && d.is_empty() && e.is_empty(), "streams not fully consumed");

    let one = p.interleave().unwrap();
    assert_eq!(one.len(), p.control.len() + p.diff.len() + p.extra.len());
    let mut r = &one[..];
    let mut out = Vec::new();
    apply_interleaved(old, old.len() as u64, &mut r, new.len() as u64, &mut out).unwrap();
    assert!(out == new && r.is_empty());
    p
}

fn triples(control: &[u8]) -> Vec<(u64, u64, i64)> {
    let mut c = control;
    let mut v = Vec::new();
    while !c.is_empty() {
        let mut src = One(&mut c);
        let a = read_varint(&mut src).unwrap();
        let b = read_varint(&mut src).unwrap();
        let s = unzigzag(read_varint(&mut src).unwrap());
        v.push((a, b, s));
    }
    v
}

fn control_of(triples: &[(u64, u64, i64)]) -> Vec<u8> {
    let mut c = Vec::new();
    for &(a, b, s) in triples {
        put_varint(&mut c, a);
        put_varint(&mut c, b);
        put_varint(&mut c, zigzag(s));
    }
    c
}

fn expect_corrupt(r: Result<Vec<u8>>, what: &str) {
    match r {
        Err(Error::Corrupt(msg)) => assert!(msg.starts_with("delta: ") && msg.contains(what), "{msg:?} lacks {what:?}"),
        other => panic!("expected Corrupt({what:?}), got {other:?}"),
    }
}

#[test]
fn varints_and_zigzag() {
    for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
        let mut b = Vec::new();
        put_varint(&mut b, v);
        assert!(b.len() <= 10);
        let mut r = &b[..];
        assert_eq!(read_varint(&mut One(&mut r)).unwrap(), v);
        assert!(r.is_empty());
    }
    for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
        assert_eq!(unzigzag(zigzag(v)), v);
    }
    assert_eq!(zigzag(-1), 1);
    assert_eq!(zigzag(1), 2);
}

#[test]
fn edge_sizes() {
    let mut rng = Rng(1);
    let some = rng.bytes(1000);
    for (old, new) in [
        (vec![], vec![]),
        (vec![], some.clone()),
        (some.clone(), vec![]),
        (some.clone(), some.clone()),
        (vec![7], vec![7]),
        (vec![7], vec![8]),
        (vec![], vec![9]),
        (vec![9], vec![]),
        (vec![1, 2], vec![2, 1]),
        (vec![0; 5000], vec![0; 5000]),
        (vec![0; 5000], vec![0; 7000]),
        (vec![0; 7000], vec![0; 5000]),
    ] {
        let p = roundtrip(&old, &new);
        if new.is_empty() {
            assert!(p.control.is_empty() && p.diff.is_empty() && p.extra.is_empty());
        }
    }
    // Identical input: one triple, nothing but zeros in diff, nothing in extra.
    let p = roundtrip(&some, &some);
    assert_eq!(triples(&p.control), vec![(1000, 0, 0)]);
    assert!(p.diff.iter().all(|&b| b == 0) && p.extra.is_empty());
    // Empty old: everything in extra.
    let p = roundtrip(&[], &some);
    assert_eq!(triples(&p.control), vec![(0, 1000, 0)]);
}

#[test]
fn random_data() {
    let mut rng = Rng(2);
    for &n in &[1usize, 2, 3, 17, 100, 4096, 65_537, 200_000] {
        let old = rng.bytes(n);
        let new = { let n = n + rng.below(100); rng.bytes(n) };
        roundtrip(&old, &new);
    }
}

#[test]
fn edits_are_small() {
    let mut rng = Rng(3);
    let old = rng.bytes(300_000);
    // Insertions, deletions and a moved block: the patch stores little more than the new bytes.
    let mut new = old.clone();
    new.splice(1000..1000, b"inserted".iter().copied());
    new.drain(50_000..50_100);
    let block: Vec<u8> = new.drain(100_000..140_000).collect();
    new.splice(250_000..250_000, block);
    new[200_000] ^= 0x55;
    let p = roundtrip(&old, &new);
    assert!(p.extra.len() < 100, "extra {} bytes", p.extra.len());
    assert!(p.diff.iter().filter(|&&b| b != 0).count() < 100);
    assert!(triples(&p.control).len() < 20);
}

#[test]
fn mutated_texty_and_binary() {
    let mut rng = Rng(4);
    for round in 0..12 {
        let n = 1 + rng.below(150_000);
        let old = if round % 2 == 0 { rng.texty(n) } else { rng.bytes(n) };
        let edits = rng.below(200);
        let new = mutate(&mut rng, &old, edits);
        roundtrip(&old, &new);
    }
}

#[test]
fn repetitive_inputs() {
    let mut rng = Rng(5);
    let zeros = vec![0u8; 300_000];
    let mut sparse = zeros.clone();
    for _ in 0..200 {
        let i = rng.below(sparse.len());
        sparse[i] = rng.next() as u8 | 1;
    }
    let periodic: Vec<u8> = (0..300_000u32).map(|i| (i % 7) as u8).collect();
    let periodic2: Vec<u8> = (0..310_000u32).map(|i| (i % 11) as u8).collect();
    roundtrip(&zeros, &sparse);
    roundtrip(&sparse, &zeros);
    roundtrip(&periodic, &periodic2);
    roundtrip(&periodic2, &mutate(&mut rng, &periodic2, 50));
    roundtrip(&zeros, &periodic);
}

/// Property loop: random old, new made by random edits (or unrelated), round trips, both apply
/// paths; patches of several files concatenated apply one after the other.
#[test]
fn property_loop() {
    let mut rng = Rng(6);
    let mut cat = PatchStreams::default();
    let mut files = Vec::new();
    for round in 0..150 {
        let n = match round % 4 {
            0 => rng.below(16),
            1 => rng.below(1024),
            _ => rng.below(20_000),
        };
        let old = match rng.below(3) {
            0 => rng.bytes(n),
            1 => rng.texty(n),
            _ => (0..n).map(|i| (i / (1 + round)) as u8).collect(),
        };
        let new = match rng.below(5) {
            0 => { let n = rng.below(2000); rng.bytes(n) },
            _ => {
                let edits = rng.below(40);
                mutate(&mut rng, &old, edits)
            }
        };
        let p = roundtrip(&old, &new);
        cat.control.extend_from_slice(&p.control);
        cat.diff.extend_from_slice(&p.diff);
        cat.extra.extend_from_slice(&p.extra);
        files.push((old, new));
    }
    let (mut c, mut d, mut e) = (&cat.control[..], &cat.diff[..], &cat.extra[..]);
    for (old, new) in &files {
        let mut out = Vec::new();
        apply(&old[..], old.len() as u64, &mut c, &mut d, &mut e, new.len() as u64, &mut out).unwrap();
        assert!(&out == new);
    }
    assert!(c.is_empty() && d.is_empty() && e.is_empty());
}

#[test]
fn applies_from_a_file() {
    let mut rng = Rng(7);
    let old = rng.texty(100_000);
    let new = mutate(&mut rng, &old, 30);
    let p = diff(&old, &new);
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&old).unwrap();
    let mut out = Vec::new();
    let (mut c, mut d, mut e) = (&p.control[..], &p.diff[..], &p.extra[..]);
    apply(&f, old.len() as u64, &mut c, &mut d, &mut e, new.len() as u64, &mut out).unwrap();
    assert!(out == new);
    // The declared old length exceeds the file: reported, not a panic.
    let big = old.len() as u64 + 10_000_000;
    let control = control_of(&[(0, 0, big as i64 - 10), (10, 0, 0)]);
    let mut out = Vec::new();
    let r = apply(&f, big, &mut &control[..], &mut &[0u8; 10][..], &mut &[0u8; 0][..], 10, &mut out);
    assert!(matches!(&r, Err(Error::Corrupt(m)) if m.contains("old file ends")), "{r:?}");
}

#[test]
fn malicious_patches() {
    let old: Vec<u8> = (0..100u8).collect();
    let run = |control: Vec<u8>, diff: Vec<u8>, extra: Vec<u8>, new_len: u64| {
        apply_slices(&old, &PatchStreams { control, diff, extra }, new_len)
    };
    // Sanity: a hand-made valid patch.
    let ok = run(control_of(&[(0, 0, 10), (5, 2, -3), (4, 0, 0)]), vec![0, 0, 0, 0, 1, 0, 0, 0, 0], vec![9, 9], 11);
    assert_eq!(ok.unwrap(), vec![10, 11, 12, 13, 15, 9, 9, 12, 13, 14, 15]);

    expect_corrupt(run(control_of(&[(0, 0, -1), (1, 0, 0)]), vec![0], vec![], 1), "seek by -1");
    expect_corrupt(run(control_of(&[(0, 0, 101), (1, 0, 0)]), vec![0], vec![], 1), "leaves the old file");
    expect_corrupt(run(control_of(&[(1, 0, i64::MIN), (1, 0, 0)]), vec![0, 0], vec![], 2), "leaves the old file");
    expect_corrupt(run(control_of(&[(0, 0, 99), (2, 0, 0)]), vec![0, 0], vec![], 2), "reads past the old file");
    expect_corrupt(run(control_of(&[(101, 0, 0)]), vec![0; 101], vec![], 200), "reads past the old file");
    expect_corrupt(run(control_of(&[(6, 0, 0)]), vec![0; 6], vec![], 5), "add of 6 bytes exceeds");
    expect_corrupt(run(control_of(&[(3, 3, 0)]), vec![0; 3], vec![0; 3], 5), "copy of 3 bytes exceeds");
    expect_corrupt(run(control_of(&[(u64::MAX, 0, 0)]), vec![], vec![], u64::MAX), "reads past the old file");
    expect_corrupt(run(control_of(&[(0, u64::MAX, 0)]), vec![], vec![1; 10], u64::MAX), "extra stream truncated");
    expect_corrupt(run(control_of(&[(1, 0, 0), (0, 0, 5), (1, 0, 0)]), vec![0; 2], vec![], 2), "produces no bytes");
    // Truncated streams.
    expect_corrupt(run(control_of(&[(5, 0, 0)]), vec![0; 4], vec![], 5), "diff stream truncated");
    expect_corrupt(run(control_of(&[(0, 5, 0)]), vec![], vec![0; 4], 5), "extra stream truncated");
    expect_corrupt(run(control_of(&[(5, 0, 0)]), vec![0; 5], vec![], 6), "control stream truncated");
    expect_corrupt(run(vec![0x85], vec![0; 5], vec![], 5), "control stream truncated");
    expect_corrupt(run(vec![], vec![], vec![], 1), "control stream truncated");
    // Huge varints.
    expect_corrupt(run(vec![0xff; 11], vec![], vec![], 1), "exceeds 64 bits");
    expect_corrupt(run([vec![0xff; 9], vec![0x02]].concat(), vec![], vec![], 1), "exceeds 64 bits");
    let max = [vec![0xff; 9], vec![0x01]].concat(); // u64::MAX, legal as a varint
    expect_corrupt(run([max.clone(), vec![0, 0]].concat(), vec![], vec![], 1), "add of 18446744073709551615 bytes");
    expect_corrupt(run([vec![1, 0], max].concat(), vec![0], vec![], 2), "seek by -9223372036854775808");
}

/// Patch bytes altered at random: apply must return (Err or, rarely, Ok with exactly new_len
/// bytes), never panic or loop.
#[test]
fn corrupted_patches_never_panic() {
    let mut rng = Rng(8);
    let old = rng.texty(20_000);
    let new = mutate(&mut rng, &old, 40);
    let good = diff(&old, &new);
    let one = good.interleave().unwrap();
    for round in 0..3000 {
        let mut p = good.clone();
        let which = rng.below(3);
        let s = match which {
            0 => &mut p.control,
            1 => &mut p.diff,
            _ => &mut p.extra,
        };
        match rng.below(3) {
            0 if !s.is_empty() => {
                let n = rng.below(s.len());
                s.truncate(n)
            }
            1 if !s.is_empty() => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(s.len());
                    s[i] = rng.next() as u8;
                }
            }
            _ => *s = { let n = rng.below(64); rng.bytes(n) },
        }
        let new_len = if round % 7 == 0 { rng.next() >> rng.below(64) } else { new.len() as u64 };
        if let Ok(out) = apply_slices(&old, &p, new_len) {
            assert_eq!(out.len() as u64, new_len);
        }
        let mut q = one.clone();
        let i = rng.below(q.len());
        q[i] = rng.next() as u8;
        q.truncate(q.len() - rng.below(2) * rng.below(q.len()));
        let mut out = Vec::new();
        let r = apply_interleaved(&old[..], old.len() as u64, &mut &q[..], new_len, &mut out);
        if let Ok(n) = r {
            assert_eq!(n, new_len);
        }
    }
}

#[test]
fn interleave_rejects_inconsistent_streams() {
    let p = PatchStreams { control: control_of(&[(5, 0, 0)]), diff: vec![0; 4], extra: vec![] };
    assert!(matches!(p.interleave(), Err(Error::Corrupt(_))));
}

#[test]
fn slice_read_at() {
    let data = [1u8, 2, 3];
    let mut b = [0u8; 4];
    assert_eq!(data[..].read_at(&mut b, 1).unwrap(), 2);
    assert_eq!(&b[..2], &[2, 3]);
    assert_eq!(data[..].read_at(&mut b, 3).unwrap(), 0);
    assert_eq!(data[..].read_at(&mut b, u64::MAX).unwrap(), 0);
}

#[test]
fn common_prefix_lengths() {
    let a: Vec<u8> = (0..40).collect();
    for i in 0..40 {
        let mut b = a.clone();
        b[i] ^= 1;
        assert_eq!(common_prefix(&a, &b), i);
        assert_eq!(common_prefix(&a[..i], &b), i);
    }
    assert_eq!(common_prefix(&a, &a), 40);
    assert_eq!(common_prefix(&[], &a), 0);
}

/// An old file holding two near-copies of a region, the new file one of them: classic bsdiff
/// searches the suffix array at every byte of the region with matches as long as the region
/// (quadratic: a minute for 1 MiB). Reusing the previous match keeps the searches few.
#[test]
fn near_duplicate_region_is_not_quadratic() {
    let mut rng = Rng(9);
    let x = rng.bytes(256 * 1024);
    let mut x2 = x.clone();
    x2[x.len() / 2] ^= 1;
    let old = [x.clone(), x2.clone()].concat();
    let (p, searches) = diff_counting(&old, &x2);
    assert!(searches < 1000, "{searches} searches");
    assert!(p.extra.is_empty() && p.diff.iter().filter(|&&b| b != 0).count() <= 1);
    roundtrip(&old, &x2);

    // Several changes spread over the aligned copy.
    let mut y = x.clone();
    for k in 1..6 {
        let i = k * y.len() / 7;
        y[i] ^= 0xff;
    }
    let old = [x.clone(), y.clone()].concat();
    let new = [b"head".to_vec(), y, b"tail".to_vec()].concat();
    let (_, searches) = diff_counting(&old, &new);
    assert!(searches < 5000, "{searches} searches");
    roundtrip(&old, &new);
}

/// Offsets past 4 GiB survive (32-bit targets included): an old "file" of 6 GiB made up on the
/// fly, read at 5 GiB.
#[test]
fn offsets_beyond_4_gib() {
    struct Virtual(u64);
    impl ReadAt for Virtual {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let n = (buf.len() as u64).min(self.0.saturating_sub(offset)) as usize;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = ((offset + i as u64) % 251) as u8;
            }
            Ok(n)
        }
    }
    let old_len = 6u64 << 30;
    let at = 5u64 << 30;
    let control = control_of(&[(0, 0, at as i64), (100_000, 1, -(at as i64) - 100_000), (3, 0, 0)]);
    let mut diff = vec![0u8; 100_003];
    diff[0] = 1;
    let mut out = Vec::new();
    let n = apply(&Virtual(old_len), old_len, &mut &control[..], &mut &diff[..], &mut &[42u8][..], 100_004, &mut out)
        .unwrap();
    assert_eq!(n, 100_004);
    let expect: Vec<u8> = (0..100_000u64)
        .map(|i| ((at + i) % 251) as u8)
        .chain([42])
        .chain((0..3u64).map(|i| (i % 251) as u8))
        .collect();
    let mut expect = expect;
    expect[0] = expect[0].wrapping_add(1);
    assert!(out == expect);
    // One byte further than the old file reaches is refused.
    let control = control_of(&[(0, 0, old_len as i64 - 1), (2, 0, 0)]);
    let r = apply(&Virtual(old_len), old_len, &mut &control[..], &mut &[0u8; 2][..], &mut &[0u8; 0][..], 2, &mut out);
    assert!(matches!(r, Err(Error::Corrupt(m)) if m.contains("reads past the old file")));
}
