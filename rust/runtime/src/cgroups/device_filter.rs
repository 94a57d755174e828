//! The cgroup v2 device filter: the device rules compiled into an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` (cgroup v2 has no `devices.allow`; runc and crun do the same).
//!
//! The kernel runs the program on every mknod and open of a device node by a process of the cgroup, with
//! `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }` (`access_type` = access bits << 16 |
//! device type) in r1; the program returns 1 to allow, 0 to deny (EPERM). One block per rule, first match
//! wins, default deny:
//!
//! ```text
//!   r2 = ctx.access_type & 0xffff      type: 1 block, 2 char
//!   r3 = ctx.access_type >> 16         requested access: 1 mknod, 2 read, 4 write
//!   r4 = ctx.major; r5 = ctx.minor
//! rule:
//!   if r2 != TYPE goto next
//!   r6 = r3; r6 &= ~ACCESS & 7; if r6 != 0 goto next     (skipped for rwm)
//!   if r4 != MAJOR goto next                               (skipped for *)
//!   if r5 != MINOR goto next                               (skipped for *)
//!   r0 = 1; exit
//! next: ...
//!   r0 = 0; exit
//! ```

use crate::devices::{DeviceKind, DeviceRule};

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn` on a little-endian machine (dst_reg in
/// the low nibble of `regs`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU64_AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const ALU64_RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `BPF_DEVCG_DEV_BLOCK`, `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

/// The program allowing exactly `rules`.
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU64_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules {
        p.extend(rule_block(rule));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// One rule; its jumps go to the first instruction after the block.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    // Jumps hold their index in the block; offsets are filled once the length is known.
    let mut b = Vec::new();
    let kind = match rule.kind {
        DeviceKind::Block => DEV_BLOCK,
        DeviceKind::Char => DEV_CHAR,
    };
    b.push(insn(JMP_JNE_K, 2, 0, 0, kind));
    let denied = i32::from(!rule.access & 7);
    if denied != 0 {
        b.push(insn(ALU64_MOV_X, 6, 3, 0, 0));
        b.push(insn(ALU64_AND_K, 6, 0, 0, denied));
        b.push(insn(JMP_JNE_K, 6, 0, 0, 0));
    }
    // Device numbers are at most 32 bits; as the kernel's comparison, the immediate is sign-extended.
    if let Some(major) = rule.major {
        b.push(insn(JMP_JNE_K, 4, 0, 0, major as i32));
    }
    if let Some(minor) = rule.minor {
        b.push(insn(JMP_JNE_K, 5, 0, 0, minor as i32));
    }
    b.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    b.push(insn(JMP_EXIT, 0, 0, 0, 0));
    let len = b.len();
    for (i, ins) in b.iter_mut().enumerate() {
        if ins.code == JMP_JNE_K {
            // Target = next instruction + off = the end of the block. Blocks are at most 8 instructions.
            ins.off = (len - i - 1) as i16;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{ALLOWED_DEVICES, MKNOD, READ, WRITE};

    /// Runs the program as the kernel would on `(type, access, major, minor)`, for the opcodes it uses.
    fn run(p: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [access << 16 | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = p[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[usize::try_from(i.off).unwrap() / 4]);
                }
                ALU64_AND_K => r[dst] &= i.imm as i64 as u64,
                ALU64_RSH_K => r[dst] >>= i.imm,
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                ALU64_MOV_X => r[dst] = r[src],
                JMP_JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc = pc.checked_add_signed(isize::from(i.off)).unwrap();
                    }
                }
                JMP_EXIT => return r[0],
                other => panic!("opcode {other:#x}"),
            }
            assert!(pc < p.len(), "fell off the end");
        }
        panic!("no exit")
    }

    const B: u32 = DEV_BLOCK as u32;
    const C: u32 = DEV_CHAR as u32;
    const M: u32 = MKNOD as u32;
    const R: u32 = READ as u32;
    const W: u32 = WRITE as u32;

    #[test]
    fn docker_defaults_allow_the_harmless_devices_only() {
        let p = program(&ALLOWED_DEVICES);
        // Any node may be created...
        assert_eq!(run(&p, B, M, 8, 0), 1);
        assert_eq!(run(&p, C, M, 4, 1), 1);
        // ...but a disk is neither read nor written, nor a tty, nor /dev/mem.
        assert_eq!(run(&p, B, R, 8, 0), 0);
        assert_eq!(run(&p, B, W, 179, 0), 0);
        assert_eq!(run(&p, B, R | W, 254, 2), 0);
        assert_eq!(run(&p, C, R, 4, 1), 0);
        assert_eq!(run(&p, C, R, 1, 1), 0);
        // mknod + read of a disk at once is not covered by the mknod-only rule.
        assert_eq!(run(&p, B, M | R, 8, 0), 0);
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200), (136, 0), (136, 77)] {
            assert_eq!(run(&p, C, R | W, major, minor), 1, "c {major}:{minor}");
            assert_eq!(run(&p, C, M | R | W, major, minor), 1, "c {major}:{minor}");
            // The same numbers as a block device are another device.
            assert_eq!(run(&p, B, R, major, minor), 0, "b {major}:{minor}");
        }
    }

    #[test]
    fn no_rules_deny_everything() {
        let p = program(&[]);
        assert_eq!(p.len(), 8);
        assert_eq!(run(&p, C, M, 1, 3), 0);
        assert_eq!(run(&p, C, R, 1, 3), 0);
    }

    #[test]
    fn access_must_be_a_subset_of_the_rule() {
        let ro = DeviceRule { kind: DeviceKind::Char, major: Some(10), minor: None, access: READ };
        let p = program(&[ro]);
        assert_eq!(run(&p, C, R, 10, 1), 1);
        assert_eq!(run(&p, C, W, 10, 1), 0);
        assert_eq!(run(&p, C, R | W, 10, 1), 0);
        assert_eq!(run(&p, C, R, 11, 1), 0);
    }

    #[test]
    fn encodes_registers_like_struct_bpf_insn() {
        let p = program(&[]);
        // r2 = *(u32 *)(r1 + 0): dst 2 in the low nibble, src 1 in the high one.
        assert_eq!(p[0], Insn { code: 0x61, regs: 0x12, off: 0, imm: 0 });
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(*p.last().unwrap(), Insn { code: 0x95, regs: 0, off: 0, imm: 0 });
    }
}
