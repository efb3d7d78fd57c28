//! The C library functions that only glibc has, reached through weak references, so that the
//! shim also loads into programs linked against another C library (musl: an Alpine sidecar or a
//! static-toolchain tool in the same container) and stays out of their way there.
//!
//! - `dlvsym`: finds the real `dlsym` on glibc. Elsewhere the real `dlsym` is looked up in the
//!   loaded objects' own symbol tables ([`lookup_loaded`]).
//! - `__register_atfork` (what glibc's `pthread_atfork` calls; glibc exports `pthread_atfork`
//!   itself only as a compatibility symbol) and, elsewhere, `pthread_atfork`.
//!
//! The library is linked with `-z nodelete`, so a fork handler registered here stays valid even
//! if a program `dlopen`s and `dlclose`s the shim.

use core::ffi::{c_char, c_int, c_void, CStr};

// SAFETY: defines three pointer-sized words holding the addresses of weak references (0 where
// the symbol does not exist); they are read only through the declarations below.
core::arch::global_asm!(
    ".pushsection .data.rel.ro.cf_weak,\"aw\"",
    ".p2align 3",
    ".weak dlvsym",
    ".weak __register_atfork",
    ".weak pthread_atfork",
    ".globl cf_weak_dlvsym",
    ".hidden cf_weak_dlvsym",
    "cf_weak_dlvsym: .quad dlvsym",
    ".globl cf_weak_register_atfork",
    ".hidden cf_weak_register_atfork",
    "cf_weak_register_atfork: .quad __register_atfork",
    ".globl cf_weak_pthread_atfork",
    ".hidden cf_weak_pthread_atfork",
    "cf_weak_pthread_atfork: .quad pthread_atfork",
    ".popsection",
);

unsafe extern "C" {
    static cf_weak_dlvsym: usize;
    static cf_weak_register_atfork: usize;
    static cf_weak_pthread_atfork: usize;
}

type Dlvsym = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> *mut c_void;
type Handler = Option<unsafe extern "C" fn()>;
type RegisterAtfork = unsafe extern "C" fn(Handler, Handler, Handler, *mut c_void) -> c_int;
type PthreadAtfork = unsafe extern "C" fn(Handler, Handler, Handler) -> c_int;

/// glibc's `dlvsym`, if this is glibc.
pub fn dlvsym() -> Option<Dlvsym> {
    // SAFETY: a word in .data.rel.ro, relocated by the loader before any code runs.
    let p = unsafe { cf_weak_dlvsym };
    // SAFETY: a non-zero value is the address of dlvsym, which has this signature.
    (p != 0).then(|| unsafe { core::mem::transmute::<usize, Dlvsym>(p) })
}

/// Registers `child` to run in the child after `fork`; false if no registration exists.
pub fn at_fork_child(child: extern "C" fn()) -> bool {
    // SAFETY: non-zero words are the addresses of functions of these signatures; `child` only
    // touches atomics, as a fork handler must.
    unsafe {
        let child: Handler = Some(core::mem::transmute::<extern "C" fn(), unsafe extern "C" fn()>(child));
        if cf_weak_register_atfork != 0 {
            let f = core::mem::transmute::<usize, RegisterAtfork>(cf_weak_register_atfork);
            return f(None, None, child, core::ptr::null_mut()) == 0;
        }
        if cf_weak_pthread_atfork != 0 {
            let f = core::mem::transmute::<usize, PthreadAtfork>(cf_weak_pthread_atfork);
            return f(None, None, child) == 0;
        }
    }
    false
}

/// The address of the function `name` as the first loaded object other than this library
/// defines it, read from the objects' dynamic symbol tables. For C libraries without `dlvsym`,
/// to find the real `dlsym` that the shim's own `dlsym` shadows.
pub fn lookup_loaded(name: &CStr) -> usize {
    let own = crate::objects::own();
    let mut found = 0;
    crate::objects::each(|o| {
        if !o.contains(own) {
            found = o.defines(name);
        }
        found != 0
    });
    found
}
