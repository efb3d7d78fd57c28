//! AArch64 (AAPCS64): the common slow path that every trampoline enters, and the `dlsym` entry.
//! Same contract as the x86-64 version: arguments (x0–x8, q0–q7, stack) reach the real function
//! untouched. The slot number arrives in x17 (IP1), which the ABI leaves to veneers like ours.

/// The saved integer argument registers at the base of the slow path's frame.
#[repr(C)]
pub struct Regs(pub [u64; 8]);

// SAFETY: 224-byte frame keeps sp 16-byte aligned; symbols come from slots.s and this crate.
core::arch::global_asm!(
    ".pushsection .text.cf_slow,\"ax\"",
    ".globl cf_slow",
    ".hidden cf_slow",
    ".p2align 4",
    "cf_slow:",
    "stp x29, x30, [sp, #-224]!",
    "mov x29, sp",
    "stp x0, x1, [sp, #16]",
    "stp x2, x3, [sp, #32]",
    "stp x4, x5, [sp, #48]",
    "stp x6, x7, [sp, #64]",
    "stp x8, x17, [sp, #80]", // x8: indirect-result pointer; x17: the slot number
    "stp q0, q1, [sp, #96]",
    "stp q2, q3, [sp, #128]",
    "stp q4, q5, [sp, #160]",
    "stp q6, q7, [sp, #192]",
    "mov w0, w17",
    "add x1, sp, #16",
    "ldr x2, [sp, #8]", // x30 as saved on entry: the intercepted call's return address
    "bl {dispatch}",
    "tbnz x0, #63, 3f",
    "ldr x17, [sp, #88]",
    "adrp x16, cf_real",
    "add x16, x16, :lo12:cf_real",
    "ldr x16, [x16, x17, lsl #3]",
    "ldp q0, q1, [sp, #96]",
    "ldp q2, q3, [sp, #128]",
    "ldp q4, q5, [sp, #160]",
    "ldp q6, q7, [sp, #192]",
    "ldp x0, x1, [sp, #16]",
    "ldp x2, x3, [sp, #32]",
    "ldp x4, x5, [sp, #48]",
    "ldp x6, x7, [sp, #64]",
    "ldr x8, [sp, #80]",
    "ldp x29, x30, [sp], #224",
    "br x16",
    "3:",
    "ldp x29, x30, [sp], #224",
    "ret",
    ".popsection",
    ".pushsection .data.cf_dlsym,\"aw\"",
    ".p2align 3",
    ".globl cf_real_dlsym",
    ".hidden cf_real_dlsym",
    "cf_real_dlsym:",
    ".quad 0",
    ".popsection",
    dispatch = sym crate::dispatch::cf_dispatch,
);

/// Integer argument `n` (0-based, n < 8) of the intercepted call, from the slow path's frame.
pub fn arg(regs: &Regs, n: usize) -> usize {
    regs.0[n] as usize
}

/// The `dlsym` entry; see the x86-64 version for why it tail-jumps (x30 must still hold the
/// original caller when the real `dlsym` runs).
///
/// # Safety
/// Called by C code as `void *dlsym(void *handle, const char *symbol)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
#[unsafe(naked)]
pub unsafe extern "C" fn dlsym() {
    core::arch::naked_asm!(
        "stp x29, x30, [sp, #-32]!",
        "mov x29, sp",
        "stp x0, x1, [sp, #16]",
        "mov x2, x30",
        "bl {policy}",
        "cbnz x0, 2f",
        "ldp x0, x1, [sp, #16]",
        "ldp x29, x30, [sp], #32",
        "adrp x16, cf_real_dlsym",
        "ldr x16, [x16, :lo12:cf_real_dlsym]",
        "br x16",
        "2:",
        "ldp x29, x30, [sp], #32",
        "ret",
        policy = sym crate::dlsym::cf_dlsym_policy,
    )
}
