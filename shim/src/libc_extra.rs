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

/// The address of the function `name` as the first loaded object other than `skip_base`'s
/// defines it, read from the objects' dynamic symbol tables (GNU or SysV hash). For C libraries
/// without `dlvsym`, to find the real `dlsym` that the shim's own `dlsym` shadows.
pub fn lookup_loaded(name: &CStr, skip_base: usize) -> usize {
    struct Search<'a> {
        name: &'a [u8],
        skip: usize,
        found: usize,
    }
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: called by dl_iterate_phdr with a valid info and our Search as data.
        unsafe {
            let s = &mut *(data as *mut Search<'_>);
            let info = &*info;
            let base = info.dlpi_addr as usize;
            if s.found != 0 || (base == s.skip && base != 0) || info.dlpi_phdr.is_null() {
                return 0;
            }
            let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
            if let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) {
                s.found = elf::find(base, (base + dynamic.p_vaddr as usize) as *const elf::Dyn, s.name);
            }
            i32::from(s.found != 0)
        }
    }
    let mut s = Search { name: name.to_bytes(), skip: skip_base, found: 0 };
    // SAFETY: the callback only reads loader-owned tables of loaded objects.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut s as *mut Search<'_>).cast()) };
    s.found
}

mod elf {
    //! Just enough of the ELF dynamic section to look a defined function up by name.

    #[repr(C)]
    pub struct Dyn {
        tag: isize,
        val: usize,
    }

    #[repr(C)]
    struct Sym {
        name: u32,
        info: u8,
        other: u8,
        shndx: u16,
        value: u64,
        size: u64,
    }

    const DT_NULL: isize = 0;
    const DT_HASH: isize = 4;
    const DT_STRTAB: isize = 5;
    const DT_SYMTAB: isize = 6;
    const DT_GNU_HASH: isize = 0x6fff_fef5;
    const STT_FUNC: u8 = 2;

    /// # Safety
    /// `dynamic` is the loaded `PT_DYNAMIC` of the object at `base`.
    pub unsafe fn find(base: usize, dynamic: *const Dyn, name: &[u8]) -> usize {
        let (mut strtab, mut symtab, mut gnu, mut sysv) = (0usize, 0usize, 0usize, 0usize);
        // SAFETY: the dynamic section ends with DT_NULL.
        unsafe {
            let mut d = dynamic;
            while (*d).tag != DT_NULL {
                match (*d).tag {
                    DT_STRTAB => strtab = (*d).val,
                    DT_SYMTAB => symtab = (*d).val,
                    DT_GNU_HASH => gnu = (*d).val,
                    DT_HASH => sysv = (*d).val,
                    _ => {}
                }
                d = d.add(1);
            }
        }
        // glibc relocates these entries in place; other loaders leave them relative to the base.
        let fix = |p: usize| if p != 0 && p < base { p + base } else { p };
        let (strtab, symtab, gnu, sysv) = (fix(strtab), fix(symtab), fix(gnu), fix(sysv));
        if strtab == 0 || symtab == 0 {
            return 0;
        }
        let symbol = |i: usize| -> usize {
            // SAFETY: i comes from the object's own hash table, so it indexes its symbol table.
            unsafe {
                let sym = &*(symtab as *const Sym).add(i);
                let sname = core::ffi::CStr::from_ptr((strtab + sym.name as usize) as *const core::ffi::c_char);
                if sym.shndx != 0 && sym.info & 0xf == STT_FUNC && sname.to_bytes() == name {
                    base + sym.value as usize
                } else {
                    0
                }
            }
        };
        // SAFETY: the hash tables belong to the loaded object and are laid out as the ELF gABI
        // and the GNU hash format define.
        unsafe {
            if gnu != 0 {
                let h = gnu_hash(name);
                let w = gnu as *const u32;
                let (nbuckets, symoffset, bloom_words) = (*w as usize, *w.add(1) as usize, *w.add(2) as usize);
                if nbuckets == 0 {
                    return 0;
                }
                let buckets = (gnu + 16 + bloom_words * core::mem::size_of::<usize>()) as *const u32;
                let chains = buckets.add(nbuckets);
                let mut i = *buckets.add(h as usize % nbuckets) as usize;
                if i < symoffset {
                    return 0;
                }
                loop {
                    let ch = *chains.add(i - symoffset);
                    if ch | 1 == h | 1 {
                        let found = symbol(i);
                        if found != 0 {
                            return found;
                        }
                    }
                    if ch & 1 != 0 {
                        return 0;
                    }
                    i += 1;
                }
            }
            if sysv != 0 {
                let w = sysv as *const u32;
                let nchain = *w.add(1) as usize;
                for i in 1..nchain {
                    let found = symbol(i);
                    if found != 0 {
                        return found;
                    }
                }
            }
        }
        0
    }

    fn gnu_hash(name: &[u8]) -> u32 {
        name.iter().fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(u32::from(c)))
    }
}
