//! The eBPF steering program, built for a given shard count (baked in as the divisor).
//!
//! Type `BPF_PROG_TYPE_SOCKET_FILTER`, attached to a UDP SO_REUSEPORT group with
//! `SO_ATTACH_REUSEPORT_EBPF`: the kernel runs it on each datagram with the UDP header
//! already pulled (offset 0 is the first payload byte) and uses its return value as the
//! index of the socket in the group; an index past the last socket means "no choice" and
//! the kernel falls back to its 4-tuple hash (net/core/sock_reuseport.c,
//! `run_bpf_filter`). It follows [`super::mirror`] step by step; read that first.
//!
//! Shape, chosen for the verifier (which walks every path of a bounded loop, 1M
//! instructions at most):
//! - the datagram is read through a 64-byte stack window refilled with
//!   `bpf_skb_load_bytes` (helper 26): one helper call per 64 bytes, not per byte. Near the
//!   end the window is the datagram's last 64 bytes, with the read index inside it;
//! - the bytes the current phase may still copy live on the stack and bound every loop
//!   of the phase; each phase starts with its own budget (`STEER_*_BYTES_MAX`), so the
//!   count at a phase's entry does not depend on where the previous phase ended;
//! - a refill copies a whole window or nothing: a phase that starts within the
//!   datagram's last 64 bytes ends in "no choice". Reading a shorter tail would make the
//!   read index (which the verifier must know exactly) depend on the datagram's length,
//!   or leave the verifier a choice of window kinds at every byte; either multiplies the
//!   paths it walks past its limit (measured). A REGISTER's To header has the From,
//!   Call-ID, CSeq and Contact headers after it;
//! - the window offset (r7) is only ever handed to the helper and compared with the
//!   unknown length, so the verifier does not need it exactly, and each phase starts by
//!   emptying the window (`rebase`) so that all the ways into a phase look alike to it;
//! - the state of the scan is the program counter: each phase is its own loop.
//!
//! Registers: r6 the context, r7 the window's datagram offset, r8 the read index in the
//! window, r9 the method/scheme word and then the FNV-1a state, r0 the byte just read;
//! r1..r5 scratch (helper calls clobber them). Stack: the window at fp-64, the phase's
//! budget in bytes at fp-72, the class table at fp-328.
#![forbid(unsafe_code)]

use crate::placement::{FMIX64_C1, FMIX64_C2, FMIX64_SHIFT, FNV_OFFSET, FNV_PRIME};

use super::insn::{
    Alu, Asm, AsmError, Cond, FP, Insn, Label, R0, R1, R2, R3, R4, R6, R7, R8, R9, Reg, Size,
};
use super::mirror::{
    CLASS_DISPLAY, CLASS_HOST, CLASS_IPV6, CLASS_METHOD, CLASS_TABLE, CLASS_UPPER, CLASS_USER,
    CLASS_WS, REGISTER_WORD, SIP_WORD, SIPS_WORD, STEER_CHUNK_BYTES, STEER_HEADERS_BYTES_MAX,
    STEER_HOST_BYTES_MAX, STEER_METHOD_BYTES_MAX, STEER_USER_BYTES_MAX, STEER_VALUE_BYTES_MAX,
    UriEnd, host_ends,
};

/// Instructions a program may have for an unprivileged loader (`BPF_MAXINSNS`); ours
/// stays under it so that its size is never the reason it fails to load.
pub const STEER_PROGRAM_INSNS_MAX: usize = 4096;

/// `bpf_skb_load_bytes(skb, offset, to, len)`: 0 or a negative error.
const HELPER_SKB_LOAD_BYTES: i32 = 26;
/// The window's offset from the frame pointer.
const WINDOW_AT: i16 = -(STEER_CHUNK_BYTES as i16);
/// The phase budget's offset from the frame pointer.
const BUDGET_AT: i16 = WINDOW_AT - 8;
/// The class table's offset from the frame pointer (256 bytes).
const TABLE_AT: i16 = BUDGET_AT - 256;
/// The return value for "no choice": past any socket index.
pub const NO_CHOICE: u32 = u32::MAX;

const _: () = assert!(STEER_CHUNK_BYTES.is_power_of_two() && STEER_CHUNK_BYTES <= 256);

/// Why a program could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The shard count must be in `1..=i32::MAX` (it is the divisor immediate).
    Shards(usize),
    /// The assembler refused it.
    Asm(AsmError),
    /// Longer than [`STEER_PROGRAM_INSNS_MAX`].
    TooLong(usize),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shards(n) => write!(f, "shard count {n} out of range"),
            Self::Asm(e) => write!(f, "assembling the steering program: {e}"),
            Self::TooLong(n) => write!(
                f,
                "steering program has {n} instructions, more than {STEER_PROGRAM_INSNS_MAX}"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// The steering program for a group of `shards` sockets (socket `i` belongs to core `i`).
pub fn build(shards: usize) -> Result<Vec<Insn>, BuildError> {
    let divisor = i32::try_from(shards)
        .ok()
        .filter(|&n| n > 0)
        .ok_or(BuildError::Shards(shards))?;
    let mut e = Emit::new();
    e.program(divisor);
    let insns = e.a.finish().map_err(BuildError::Asm)?;
    if insns.len() > STEER_PROGRAM_INSNS_MAX {
        return Err(BuildError::TooLong(insns.len()));
    }
    Ok(insns)
}

/// The emitter: an assembler plus the two exits every phase jumps to.
struct Emit {
    a: Asm,
    no_choice: Label,
    done: Label,
}

impl Emit {
    fn new() -> Self {
        let mut a = Asm::new();
        let no_choice = a.label();
        let done = a.label();
        Self { a, no_choice, done }
    }

    fn program(&mut self, shards: i32) {
        let no = self.no_choice;
        let a = &mut self.a;
        a.alu_reg(Alu::Mov, R6, R1);
        a.store_imm(Size::Dw, FP, BUDGET_AT, STEER_METHOD_BYTES_MAX as i32);
        for (i, word) in CLASS_TABLE.chunks_exact(4).enumerate() {
            let word = i32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            a.store_imm(Size::W, FP, TABLE_AT + 4 * i as i16, word);
        }
        // `__sk_buff.len` (offset 0): the UDP payload's length here.
        a.load(Size::W, R2, R6, 0);
        a.jump_imm(Cond::Lt, R2, STEER_CHUNK_BYTES as i32, no);
        a.jump_imm(
            Cond::Gt,
            R2,
            crate::sip::limits::DATAGRAM_BYTES_MAX as i32,
            no,
        );
        a.alu_imm(Alu::Mov, R7, -(STEER_CHUNK_BYTES as i32));
        a.alu_imm(Alu::Mov, R8, STEER_CHUNK_BYTES as i32);
        a.alu_imm(Alu::Mov, R9, 0);

        // The method, shifted into r9 (a ninth letter resets it to 1).
        let method = self.a.label();
        let method_end = self.a.label();
        let letter = self.a.label();
        let shift = self.a.label();
        self.a.bind(method);
        self.next();
        self.a.jump_imm(Cond::Eq, R0, i32::from(b' '), method_end);
        self.class(CLASS_METHOD, letter);
        self.a.ja(no);
        self.a.bind(letter);
        self.a.alu_reg(Alu::Mov, R1, R9);
        self.a.alu_imm(Alu::Rsh, R1, 56);
        self.a.jump_imm(Cond::Eq, R1, 0, shift);
        self.a.alu_imm(Alu::Mov, R9, 1);
        self.a.bind(shift);
        self.a.alu_imm(Alu::Lsh, R9, 8);
        self.a.alu_reg(Alu::Or, R9, R0);
        self.a.ja(method);
        self.a.bind(method_end);
        self.rebase(STEER_HEADERS_BYTES_MAX);
        let to_path = self.a.label();
        self.a.ld_imm64(R1, REGISTER_WORD);
        self.a.jump_reg(Cond::Eq, R9, R1, to_path);
        self.rebase(STEER_USER_BYTES_MAX);
        self.scheme();
        self.uri(UriEnd::RequestLine);
        self.a.bind(to_path);
        self.the_to_uri();

        // fmix64 (`placement::fmix64`), then the owner (`placement::shard_for`).
        let done = self.done;
        let a = &mut self.a;
        a.bind(done);
        for mul in [Some(FMIX64_C1), Some(FMIX64_C2), None] {
            a.alu_reg(Alu::Mov, R1, R9);
            a.alu_imm(Alu::Rsh, R1, FMIX64_SHIFT as i32);
            a.alu_reg(Alu::Xor, R9, R1);
            if let Some(m) = mul {
                a.ld_imm64(R1, m);
                a.alu_reg(Alu::Mul, R9, R1);
            }
        }
        a.alu_reg(Alu::Mov, R0, R9);
        a.alu_imm(Alu::Mod, R0, shards);
        a.exit();
        a.bind(no);
        a.mov32_imm(R0, NO_CHOICE as i32);
        a.exit();
    }

    /// r0 = the next byte (mirror: `Cursor::next`); out of bytes or budget: no choice.
    fn next(&mut self) {
        let no = self.no_choice;
        let a = &mut self.a;
        let have = a.label();
        let chunk = STEER_CHUNK_BYTES as i32;
        a.jump_imm(Cond::Lt, R8, chunk, have);
        a.load(Size::Dw, R1, FP, BUDGET_AT);
        a.jump_imm(Cond::Lt, R1, chunk, no);
        a.alu_imm(Alu::Add, R1, -chunk);
        a.store(Size::Dw, FP, BUDGET_AT, R1);
        a.alu_reg(Alu::Add, R7, R8); // r7 = the next byte's datagram offset
        a.load(Size::W, R2, R6, 0);
        a.alu_reg(Alu::Mov, R3, R7);
        a.alu_imm(Alu::Add, R3, chunk);
        a.jump_reg(Cond::Gt, R3, R2, no);
        a.alu_imm(Alu::Mov, R8, 0);
        a.alu_reg(Alu::Mov, R1, R6);
        a.alu_reg(Alu::Mov, R2, R7);
        a.alu_reg(Alu::Mov, R3, FP);
        a.alu_imm(Alu::Add, R3, i32::from(WINDOW_AT));
        a.alu_imm(Alu::Mov, R4, chunk);
        a.call(HELPER_SKB_LOAD_BYTES);
        a.jump_imm(Cond::Ne, R0, 0, no);
        a.bind(have);
        a.alu_reg(Alu::Mov, R1, FP);
        a.alu_imm(Alu::Add, R1, i32::from(WINDOW_AT));
        a.alu_reg(Alu::Add, R1, R8);
        a.load(Size::B, R0, R1, 0);
        a.alu_imm(Alu::Add, R8, 1);
    }

    /// Starts a phase that may copy `budget` bytes, with an empty window (mirror:
    /// `Cursor::rebase`).
    fn rebase(&mut self, budget: usize) {
        self.a.store_imm(Size::Dw, FP, BUDGET_AT, budget as i32);
        self.a.alu_reg(Alu::Add, R7, R8);
        self.a.alu_imm(Alu::Add, R7, -(STEER_CHUNK_BYTES as i32));
        self.a.alu_imm(Alu::Mov, R8, STEER_CHUNK_BYTES as i32);
    }

    /// r1 = the class bits of r0 ([`CLASS_TABLE`], on the stack).
    fn classes_r0(&mut self) {
        self.a.alu_reg(Alu::Mov, R1, FP);
        self.a.alu_imm(Alu::Add, R1, i32::from(TABLE_AT));
        self.a.alu_reg(Alu::Add, R1, R0);
        self.a.load(Size::B, R1, R1, 0);
    }

    /// Jumps to `yes` when r0 has `class`; falls through otherwise.
    fn class(&mut self, class: u8, yes: Label) {
        self.classes_r0();
        self.a.jump_imm(Cond::Set, R1, i32::from(class), yes);
    }

    /// Jumps to no choice unless `b == want`.
    fn expect(&mut self, b: Reg, want: u8) {
        self.a
            .jump_imm(Cond::Ne, b, i32::from(want), self.no_choice);
    }

    /// r9 = FNV-1a step of r9 with r0.
    fn fnv_r0(&mut self) {
        self.a.alu_reg(Alu::Xor, R9, R0);
        self.a.ld_imm64(R1, FNV_PRIME);
        self.a.alu_reg(Alu::Mul, R9, R1);
    }

    /// r9 = FNV-1a step of r9 with `byte`.
    fn fnv_byte(&mut self, byte: u8) {
        self.a.alu_imm(Alu::Xor, R9, i32::from(byte));
        self.a.ld_imm64(R1, FNV_PRIME);
        self.a.alu_reg(Alu::Mul, R9, R1);
    }

    /// r0 lower-cased if it is `A..=Z` (mirror: `lower`), without a branch.
    fn lower_r0(&mut self) {
        self.classes_r0();
        self.a.alu_imm(Alu::And, R1, i32::from(CLASS_UPPER));
        self.a.alu_reg(Alu::Or, R0, R1);
    }

    /// `sip:` or `sips:`, any case (mirror: `scheme`).
    fn scheme(&mut self) {
        for want in [b's', b'i', b'p'] {
            self.next();
            self.a.alu_imm(Alu::Or, R0, 0x20);
            self.expect(R0, want);
        }
        let ok = self.a.label();
        self.next();
        self.a.jump_imm(Cond::Eq, R0, i32::from(b':'), ok);
        self.a.alu_imm(Alu::Or, R0, 0x20);
        self.expect(R0, b's');
        self.next();
        self.expect(R0, b':');
        self.a.bind(ok);
    }

    /// White space skipped: r0 is the first byte that is not SP or HTAB. One class test,
    /// not two compares: two paths into the loop's next byte would double the states
    /// the verifier walks with every byte.
    fn skip_ws(&mut self) {
        let top = self.a.label();
        let out = self.a.label();
        let again = self.a.label();
        self.a.bind(top);
        self.class(CLASS_WS, again);
        self.a.ja(out);
        self.a.bind(again);
        self.next();
        self.a.ja(top);
        self.a.bind(out);
    }

    /// The To header's URI (mirror: `the_to_uri`).
    fn the_to_uri(&mut self) {
        let no = self.no_choice;
        let scan = self.a.label();
        let line = self.a.label();
        let not_o = self.a.label();
        let ws = self.a.label();
        let ws_next = self.a.label();
        let found = self.a.label();
        self.next();
        self.a.bind(scan);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'\n'), line);
        self.next();
        self.a.ja(scan);
        self.a.bind(line);
        self.next();
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'\r'), no);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'\n'), no);
        self.a.alu_reg(Alu::Mov, R1, R0);
        self.a.alu_imm(Alu::Or, R1, 0x20);
        self.a.jump_imm(Cond::Ne, R1, i32::from(b't'), scan);
        self.next();
        self.a.alu_reg(Alu::Mov, R1, R0);
        self.a.alu_imm(Alu::Or, R1, 0x20);
        self.a.jump_imm(Cond::Ne, R1, i32::from(b'o'), not_o);
        self.next();
        self.a.ja(ws);
        self.a.bind(not_o);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b':'), ws);
        self.class(CLASS_WS, ws);
        self.a.ja(scan);
        self.a.bind(ws);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b':'), found);
        self.class(CLASS_WS, ws_next);
        self.a.ja(scan);
        self.a.bind(ws_next);
        self.next();
        self.a.ja(ws);

        // The value.
        self.a.bind(found);
        self.rebase(STEER_VALUE_BYTES_MAX);
        self.next();
        self.skip_ws();
        let quoted = self.a.label();
        let token = self.a.label();
        let not_colon = self.a.label();
        let in_token = self.a.label();
        let bracket = self.a.label();
        let bare = self.a.label();
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'"'), quoted);
        self.a.alu_imm(Alu::Mov, R9, 0);
        self.a.bind(token);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'<'), bracket);
        self.a.jump_imm(Cond::Ne, R0, i32::from(b':'), not_colon);
        self.a.ld_imm64(R1, SIP_WORD);
        self.a.jump_reg(Cond::Eq, R9, R1, bare);
        self.a.ld_imm64(R1, SIPS_WORD);
        self.a.jump_reg(Cond::Eq, R9, R1, bare);
        // Any other `:` ends it here: a byte the verifier knows must not reach the class
        // test, whose table bytes it does not know, or it would walk both ways on.
        self.a.ja(no);
        self.a.bind(not_colon);
        // Shifted in before the class check narrows the byte (mirror: same order).
        self.a.alu_reg(Alu::Mov, R1, R0);
        self.a.alu_imm(Alu::Or, R1, 0x20);
        self.a.alu_imm(Alu::Lsh, R9, 8);
        self.a.alu_reg(Alu::Or, R9, R1);
        self.class(CLASS_DISPLAY, in_token);
        self.a.ja(no);
        self.a.bind(in_token);
        self.next();
        self.a.ja(token);

        // A quoted display name, then `<`.
        let q_top = self.a.label();
        let q_end = self.a.label();
        self.a.bind(quoted);
        self.a.bind(q_top);
        self.next();
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'"'), q_end);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'\\'), no);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'\r'), no);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'\n'), no);
        self.a.ja(q_top);
        self.a.bind(q_end);
        self.next();
        self.skip_ws();
        self.expect(R0, b'<');

        self.a.bind(bracket);
        self.rebase(STEER_USER_BYTES_MAX);
        self.scheme();
        self.uri(UriEnd::Bracketed);
        self.a.bind(bare);
        self.rebase(STEER_USER_BYTES_MAX);
        self.uri(UriEnd::Bare);
    }

    /// Hashes the URI's `user@host` into r9 and checks its end (mirror: `uri`); jumps to
    /// `done` or no choice.
    fn uri(&mut self, end: UriEnd) {
        let no = self.no_choice;
        let done = self.done;
        let user = self.a.label();
        let user_in = self.a.label();
        let first_in = self.a.label();
        let at = self.a.label();
        self.a.ld_imm64(R9, FNV_OFFSET);
        self.next();
        self.class(CLASS_USER, first_in);
        self.a.ja(no);
        self.a.bind(first_in);
        self.a.bind(user);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'@'), at);
        self.class(CLASS_USER, user_in);
        self.a.ja(no);
        self.a.bind(user_in);
        self.fnv_r0();
        self.next();
        self.a.ja(user);

        self.a.bind(at);
        self.fnv_byte(b'@');
        self.rebase(STEER_HOST_BYTES_MAX);
        self.next();
        let v6 = self.a.label();
        let host = self.a.label();
        let host_in = self.a.label();
        let first_host = self.a.label();
        let term = self.a.label();
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'['), v6);
        self.class(CLASS_HOST, first_host);
        self.a.ja(no);
        self.a.bind(first_host);
        self.a.bind(host);
        self.class(CLASS_HOST, host_in);
        self.a.ja(term);
        self.a.bind(host_in);
        self.lower_r0();
        self.fnv_r0();
        self.next();
        self.a.ja(host);

        let v6_top = self.a.label();
        let v6_in = self.a.label();
        let v6_end = self.a.label();
        self.a.bind(v6);
        self.fnv_byte(b'[');
        self.next();
        self.a.jump_imm(Cond::Eq, R0, i32::from(b']'), no);
        self.a.bind(v6_top);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b']'), v6_end);
        self.class(CLASS_IPV6, v6_in);
        self.a.ja(no);
        self.a.bind(v6_in);
        self.lower_r0();
        self.fnv_r0();
        self.next();
        self.a.ja(v6_top);
        self.a.bind(v6_end);
        self.fnv_byte(b']');
        self.next();

        self.a.bind(term);
        for &b in host_ends(end) {
            self.a.jump_imm(Cond::Eq, R0, i32::from(b), done);
        }
        if end != UriEnd::Bare {
            self.a.ja(no);
            return;
        }
        let lf = self.a.label();
        self.a.jump_imm(Cond::Ne, R0, i32::from(b'\r'), lf);
        self.next();
        self.a.bind(lf);
        self.expect(R0, b'\n');
        self.next();
        self.a.jump_imm(Cond::Eq, R0, i32::from(b' '), no);
        self.a.jump_imm(Cond::Eq, R0, i32::from(b'\t'), no);
        self.a.ja(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_under_the_instruction_limit_for_any_sane_core_count() {
        for shards in [1, 2, 3, 64, 1024] {
            let insns = build(shards).expect("builds");
            assert!(insns.len() < STEER_PROGRAM_INSNS_MAX, "{}", insns.len());
        }
        assert_eq!(build(0), Err(BuildError::Shards(0)));
    }

    #[test]
    fn the_divisor_is_the_shard_count() {
        let insns = build(7).expect("builds");
        // BPF_ALU64|BPF_K|BPF_MOD r0, 7, then exit.
        let at = insns
            .iter()
            .position(|i| i.code == 0x97)
            .expect("one modulo");
        assert_eq!((insns[at].dst, insns[at].imm), (0, 7));
        assert_eq!(insns[at + 1].code, 0x95);
    }
}
