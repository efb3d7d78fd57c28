//! x86-64 System V: the common slow path that every trampoline enters, and the `dlsym` entry.
//!
//! Both preserve the caller's arguments exactly (integer, vector and stack), so one piece of
//! assembly serves every CUDA function whatever its signature: the slow path saves the argument
//! registers, asks Rust what to do, then either returns an error code or restores everything and
//! tail-jumps to the real function.

/// The saved integer argument registers at the base of the slow path's frame.
#[repr(C)]
pub struct Regs(pub [u64; 6]);

// SAFETY: the symbols referenced are defined in slots.s (hidden) and in this crate; the stack
// stays 16-byte aligned at the call (entry is 8 mod 16, push rbp, 208 = 13*16 bytes of frame).
core::arch::global_asm!(
    ".pushsection .text.cf_slow,\"ax\"",
    ".globl cf_slow",
    ".hidden cf_slow",
    ".p2align 4",
    "cf_slow:",
    "push rbp",
    "mov rbp, rsp",
    "sub rsp, 208",
    "mov [rsp + 0], rdi",
    "mov [rsp + 8], rsi",
    "mov [rsp + 16], rdx",
    "mov [rsp + 24], rcx",
    "mov [rsp + 32], r8",
    "mov [rsp + 40], r9",
    "mov [rsp + 48], rax", // %al: vector-register count of a variadic call
    "mov [rsp + 56], r10",
    "mov [rsp + 64], r11", // the slot number
    "movdqa [rsp + 80], xmm0",
    "movdqa [rsp + 96], xmm1",
    "movdqa [rsp + 112], xmm2",
    "movdqa [rsp + 128], xmm3",
    "movdqa [rsp + 144], xmm4",
    "movdqa [rsp + 160], xmm5",
    "movdqa [rsp + 176], xmm6",
    "movdqa [rsp + 192], xmm7",
    "mov edi, r11d",
    "mov rsi, rsp",
    "mov rdx, [rbp + 8]", // the intercepted call's return address: who made it
    "call {dispatch}",
    "test rax, rax",
    "js 3f",
    "mov r11, [rsp + 64]",
    "lea r10, [rip + cf_real]",
    "mov r11, [r10 + r11 * 8]",
    "mov rdi, [rsp + 0]",
    "mov rsi, [rsp + 8]",
    "mov rdx, [rsp + 16]",
    "mov rcx, [rsp + 24]",
    "mov r8, [rsp + 32]",
    "mov r9, [rsp + 40]",
    "mov rax, [rsp + 48]",
    "mov r10, [rsp + 56]",
    "movdqa xmm0, [rsp + 80]",
    "movdqa xmm1, [rsp + 96]",
    "movdqa xmm2, [rsp + 112]",
    "movdqa xmm3, [rsp + 128]",
    "movdqa xmm4, [rsp + 144]",
    "movdqa xmm5, [rsp + 160]",
    "movdqa xmm6, [rsp + 176]",
    "movdqa xmm7, [rsp + 192]",
    "leave",
    "jmp r11",
    "3:",
    "leave",
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

/// Integer argument `n` (0-based, n < 6) of the intercepted call, from the slow path's frame.
pub fn arg(regs: &Regs, n: usize) -> usize {
    regs.0[n] as usize
}

/// The `dlsym` entry. glibc resolves `RTLD_NEXT` relative to the address `dlsym` returns to, so
/// after asking the policy this tail-jumps to the real `dlsym` with the caller's own return
/// address still on the stack: libraries that interpose with `dlsym(RTLD_NEXT, …)` keep working.
///
/// # Safety
/// Called by C code as `void *dlsym(void *handle, const char *symbol)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
#[unsafe(naked)]
pub unsafe extern "C" fn dlsym() {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "sub rsp, 16",
        "mov [rsp], rdi",
        "mov [rsp + 8], rsi",
        "mov rdx, [rbp + 8]",
        "call {policy}",
        "test rax, rax",
        "jnz 2f",
        "mov rdi, [rsp]",
        "mov rsi, [rsp + 8]",
        "leave",
        "jmp qword ptr [rip + cf_real_dlsym]",
        "2:",
        "leave",
        "ret",
        policy = sym crate::dlsym::cf_dlsym_policy,
    )
}
