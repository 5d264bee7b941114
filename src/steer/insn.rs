//! A small eBPF instruction builder: just what the steering program needs, with labels
//! and jump fix-ups, so the program is written in Rust and needs no compiler toolchain.
//!
//! Encoding (kernel `include/uapi/linux/bpf.h`, `struct bpf_insn`): eight bytes,
//! `u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm`, little-endian on the machines we
//! run on. `code` = operation | source | class. A jump's `off` counts instructions from the
//! one after the jump. `LD_IMM64` takes two slots: the low half of the constant in the
//! first `imm`, the high half in the second.

/// An eBPF register (`r0`..`r10`; `r10` is the read-only frame pointer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u8);

/// Return value, and helper-call result.
pub const R0: Reg = Reg(0);
/// First argument (the context on entry); clobbered by calls.
pub const R1: Reg = Reg(1);
/// Second argument; clobbered by calls.
pub const R2: Reg = Reg(2);
/// Third argument; clobbered by calls.
pub const R3: Reg = Reg(3);
/// Fourth argument; clobbered by calls.
pub const R4: Reg = Reg(4);
/// Fifth argument; clobbered by calls.
pub const R5: Reg = Reg(5);
/// Callee-saved.
pub const R6: Reg = Reg(6);
/// Callee-saved.
pub const R7: Reg = Reg(7);
/// Callee-saved.
pub const R8: Reg = Reg(8);
/// Callee-saved.
pub const R9: Reg = Reg(9);
/// The frame pointer (read-only; the stack is the 512 bytes below it).
pub const FP: Reg = Reg(10);

// Instruction classes.
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
// Operand source: the immediate (K) or the source register (X).
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
// Memory access mode.
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;

/// Size of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// One byte.
    B = 0x10,
    /// Two bytes.
    H = 0x08,
    /// Four bytes.
    W = 0x00,
    /// Eight bytes.
    Dw = 0x18,
}

/// A 64-bit ALU operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alu {
    /// `dst += src`
    Add = 0x00,
    /// `dst -= src`
    Sub = 0x10,
    /// `dst *= src`
    Mul = 0x20,
    /// `dst |= src`
    Or = 0x40,
    /// `dst &= src`
    And = 0x50,
    /// `dst <<= src`
    Lsh = 0x60,
    /// `dst >>= src` (logical)
    Rsh = 0x70,
    /// `dst %= src` (unsigned)
    Mod = 0x90,
    /// `dst ^= src`
    Xor = 0xa0,
    /// `dst = src`
    Mov = 0xb0,
}

/// A conditional jump's comparison (unsigned unless noted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `==`
    Eq = 0x10,
    /// `>`
    Gt = 0x20,
    /// `>=`
    Ge = 0x30,
    /// `dst & src != 0`
    Set = 0x40,
    /// `!=`
    Ne = 0x50,
    /// `<`
    Lt = 0xa0,
    /// `<=`
    Le = 0xb0,
}

const JMP_JA: u8 = 0x00;
const JMP_CALL: u8 = 0x80;
const JMP_EXIT: u8 = 0x90;

/// One encoded instruction slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Operation | source | class.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Signed offset (memory displacement or jump distance).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    /// The eight bytes the kernel reads.
    pub fn encode(&self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.src << 4) | (self.dst & 0x0f),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }
}

/// A jump target, bound to an instruction index with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Why a program could not be assembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsmError {
    /// A jump names a label that was never bound.
    UnboundLabel,
    /// A jump's distance does not fit the 16-bit offset.
    JumpTooFar,
}

impl std::fmt::Display for AsmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UnboundLabel => "a jump names a label that was never bound",
            Self::JumpTooFar => "a jump does not fit the 16-bit offset",
        })
    }
}

impl std::error::Error for AsmError {}

/// An instruction list under construction.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    /// (jump instruction index, its target).
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// Instruction slots so far (`LD_IMM64` counts two).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// True when nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            dst: dst.0,
            src: src.0,
            off,
            imm,
        });
    }

    /// A fresh unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction.
    pub fn bind(&mut self, label: Label) {
        if let Some(slot) = self.labels.get_mut(label.0) {
            *slot = Some(self.insns.len());
        }
    }

    /// `dst op= imm` (64-bit; `imm` sign-extended).
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) {
        self.push(CLASS_ALU64 | SRC_K | op as u8, dst, Reg(0), 0, imm);
    }

    /// `dst op= src` (64-bit).
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) {
        self.push(CLASS_ALU64 | SRC_X | op as u8, dst, src, 0, 0);
    }

    /// `dst = imm` as a 32-bit move: the upper half is zeroed, not sign-extended.
    pub fn mov32_imm(&mut self, dst: Reg, imm: i32) {
        self.push(CLASS_ALU | SRC_K | Alu::Mov as u8, dst, Reg(0), 0, imm);
    }

    /// `dst = imm` (64-bit constant, two slots).
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) {
        self.push(
            CLASS_LD | Size::Dw as u8 | MODE_IMM,
            dst,
            Reg(0),
            0,
            imm as u32 as i32,
        );
        self.push(0, Reg(0), Reg(0), 0, (imm >> 32) as u32 as i32);
    }

    /// `dst = *(size *)(src + off)`
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) {
        self.push(CLASS_LDX | size as u8 | MODE_MEM, dst, src, off, 0);
    }

    /// `*(size *)(dst + off) = src`
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) {
        self.push(CLASS_STX | size as u8 | MODE_MEM, dst, src, off, 0);
    }

    /// `*(size *)(dst + off) = imm`
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) {
        self.push(CLASS_ST | size as u8 | MODE_MEM, dst, Reg(0), off, imm);
    }

    /// `if dst cond imm goto target` (64-bit compare, `imm` sign-extended).
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.push(CLASS_JMP | SRC_K | cond as u8, dst, Reg(0), 0, imm);
    }

    /// `if dst cond src goto target` (64-bit compare).
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.push(CLASS_JMP | SRC_X | cond as u8, dst, src, 0, 0);
    }

    /// `goto target`
    pub fn ja(&mut self, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.push(CLASS_JMP | JMP_JA, Reg(0), Reg(0), 0, 0);
    }

    /// Call kernel helper number `helper` (arguments in `r1`..`r5`, result in `r0`).
    pub fn call(&mut self, helper: i32) {
        self.push(CLASS_JMP | JMP_CALL, Reg(0), Reg(0), 0, helper);
    }

    /// Return `r0`.
    pub fn exit(&mut self) {
        self.push(CLASS_JMP | JMP_EXIT, Reg(0), Reg(0), 0, 0);
    }

    /// Resolves every jump and returns the instructions.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, label) in &self.fixups {
            let target = self
                .labels
                .get(label.0)
                .copied()
                .flatten()
                .ok_or(AsmError::UnboundLabel)?;
            let distance = target as i64 - (at as i64 + 1);
            let off = i16::try_from(distance).map_err(|_| AsmError::JumpTooFar)?;
            if let Some(insn) = self.insns.get_mut(at) {
                insn.off = off;
            }
        }
        Ok(self.insns)
    }
}

/// The instructions as the byte string `bpf(BPF_PROG_LOAD)` takes.
pub fn encode_all(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(Insn::encode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(f: impl FnOnce(&mut Asm)) -> [u8; 8] {
        let mut a = Asm::new();
        f(&mut a);
        let insns = a.finish().expect("assembles");
        assert_eq!(insns.len(), 1);
        insns[0].encode()
    }

    #[test]
    fn encodings_match_the_kernel_probe() {
        // The instructions of ../shared/probes/reuseport_ebpf_probe.py, which the
        // kernel accepted and ran (STEERING-NOTES.md).
        assert_eq!(
            one(|a| a.alu_reg(Alu::Mov, R6, R1)),
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            one(|a| a.alu_imm(Alu::Mov, R2, 0)),
            [0xb7, 0x02, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            one(|a| a.alu_imm(Alu::Add, R3, -8)),
            [0x07, 0x03, 0, 0, 0xf8, 0xff, 0xff, 0xff]
        );
        assert_eq!(one(|a| a.call(26)), [0x85, 0, 0, 0, 26, 0, 0, 0]);
        assert_eq!(
            one(|a| a.load(Size::B, R0, FP, -8)),
            [0x71, 0xa0, 0xf8, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            one(|a| a.alu_imm(Alu::And, R0, 1)),
            [0x57, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(one(|a| a.exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn other_encodings_follow_the_uapi_header() {
        // BPF_ALU64|BPF_K|BPF_MOD = 0x97; BPF_ALU|BPF_K|BPF_MOV = 0xb4;
        // BPF_ST|BPF_MEM|BPF_DW = 0x7a; BPF_STX|BPF_MEM|BPF_DW = 0x7b;
        // BPF_LDX|BPF_MEM|BPF_W = 0x61; BPF_ALU64|BPF_X|BPF_MUL = 0x2f.
        assert_eq!(
            one(|a| a.alu_imm(Alu::Mod, R0, 3)),
            [0x97, 0, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(
            one(|a| a.mov32_imm(R0, -1)),
            [0xb4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            one(|a| a.store_imm(Size::Dw, FP, -72, 0)),
            [0x7a, 0x0a, 0xb8, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            one(|a| a.store(Size::Dw, FP, -72, R1)),
            [0x7b, 0x1a, 0xb8, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            one(|a| a.load(Size::W, R2, R6, 0)),
            [0x61, 0x62, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            one(|a| a.alu_reg(Alu::Mul, R9, R1)),
            [0x2f, 0x19, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn ld_imm64_takes_two_slots_low_half_first() {
        let mut a = Asm::new();
        a.ld_imm64(R1, 0x0000_0100_0000_01b3);
        let insns = a.finish().expect("assembles");
        assert_eq!(insns[0].encode(), [0x18, 0x01, 0, 0, 0xb3, 0x01, 0, 0]);
        assert_eq!(insns[1].encode(), [0, 0, 0, 0, 0x00, 0x01, 0, 0]);
    }

    #[test]
    fn jumps_count_from_the_next_instruction_both_ways() {
        let mut a = Asm::new();
        let top = a.label();
        let end = a.label();
        a.bind(top);
        a.jump_imm(Cond::Eq, R0, 10, end); // 0: +2 -> 3
        a.alu_imm(Alu::Add, R0, 1); // 1
        a.ja(top); // 2: -3 -> 0
        a.bind(end);
        a.exit(); // 3
        let insns = a.finish().expect("assembles");
        assert_eq!(insns[0].encode(), [0x15, 0, 2, 0, 10, 0, 0, 0]);
        assert_eq!(insns[2].encode(), [0x05, 0, 0xfd, 0xff, 0, 0, 0, 0]);
    }

    #[test]
    fn an_unbound_label_is_an_error() {
        let mut a = Asm::new();
        let nowhere = a.label();
        a.ja(nowhere);
        assert_eq!(a.finish(), Err(AsmError::UnboundLabel));
    }

    #[test]
    fn a_jump_past_i16_is_an_error() {
        let mut a = Asm::new();
        let end = a.label();
        a.ja(end);
        for _ in 0..40_000 {
            a.alu_imm(Alu::Add, R0, 1);
        }
        a.bind(end);
        a.exit();
        assert_eq!(a.finish(), Err(AsmError::JumpTooFar));
    }
}
