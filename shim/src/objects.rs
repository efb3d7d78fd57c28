//! The objects the dynamic loader has loaded, read from its own tables (`dl_iterate_phdr`):
//! which one holds an address, whether one defines a function, and which ones are CUDA runtimes.
//!
//! A CUDA runtime is told by what it is, not by its file name: wheels vendor it as
//! `libcudart-<hash>.so.12`, extension modules bundle it under any name, and a library merely
//! named `libcudart.so.*` need not be one. Every runtime, NVIDIA's in any version and under any
//! name, defines [`RUNTIME_MARK`]; the shim itself does not (it is no interposed function), nor
//! does a library that only calls the driver.

use core::ffi::{c_int, c_void, CStr};

/// The function every CUDA runtime defines and nothing else does: the runtime's own version.
pub const RUNTIME_MARK: &CStr = c"cudaRuntimeGetVersion";

/// One loaded object, as `dl_iterate_phdr` describes it.
pub struct Object<'a> {
    info: &'a libc::dl_phdr_info,
}

impl Object<'_> {
    /// Its load bias (what its virtual addresses are relative to).
    pub fn bias(&self) -> usize {
        self.info.dlpi_addr as usize
    }

    /// The path it was loaded from; None for the main program (which the loader names "").
    pub fn path(&self) -> Option<&CStr> {
        if self.info.dlpi_name.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string owned by the loader while the object is loaded.
        let path = unsafe { CStr::from_ptr(self.info.dlpi_name) };
        (!path.is_empty()).then_some(path)
    }

    fn headers(&self) -> &[libc::Elf64_Phdr] {
        if self.info.dlpi_phdr.is_null() {
            return &[];
        }
        // SAFETY: the loader's program headers of this object, dlpi_phnum of them.
        unsafe { core::slice::from_raw_parts(self.info.dlpi_phdr, usize::from(self.info.dlpi_phnum)) }
    }

    fn segments(&self, executable_only: bool) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.headers()
            .iter()
            .filter(move |p| p.p_type == libc::PT_LOAD && (!executable_only || p.p_flags & libc::PF_X != 0))
            .map(|p| {
                let start = self.bias().wrapping_add(p.p_vaddr as usize);
                (start, start.wrapping_add(p.p_memsz as usize))
            })
    }

    /// Whether `addr` lies in one of its loaded segments.
    pub fn contains(&self, addr: usize) -> bool {
        self.segments(false).any(|(s, e)| (s..e).contains(&addr))
    }

    /// Its executable segments, as [start, end) address ranges.
    pub fn code(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.segments(true)
    }

    /// The address of the function `name` if this object itself defines it (not one of its
    /// dependencies), from its dynamic symbol table; 0 otherwise.
    pub fn defines(&self, name: &CStr) -> usize {
        match self.headers().iter().find(|p| p.p_type == libc::PT_DYNAMIC) {
            // SAFETY: the loaded PT_DYNAMIC of this object.
            Some(d) => unsafe {
                elf::find(self.bias(), self.bias().wrapping_add(d.p_vaddr as usize) as *const elf::Dyn, name.to_bytes())
            },
            None => 0,
        }
    }

    /// Whether it is a CUDA runtime: a loaded library (not the program, not the shim whose code
    /// holds `own`) that defines the runtime's own functions.
    pub fn is_cuda_runtime(&self, own: usize) -> bool {
        self.path().is_some() && !self.contains(own) && self.defines(RUNTIME_MARK) != 0
    }
}

/// Calls `f` with each loaded object, in the loader's order, until it returns true. `f` runs
/// under the loader's lock: it must not load, unload or look anything up through the loader,
/// and must not panic (the callback cannot unwind through the C library).
pub fn each<F: FnMut(&Object<'_>) -> bool>(mut f: F) {
    unsafe extern "C" fn visit<F: FnMut(&Object<'_>) -> bool>(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        if info.is_null() {
            return 0;
        }
        // SAFETY: dl_iterate_phdr passes a valid info, and `data` is the closure given below.
        unsafe { c_int::from((*(data as *mut F))(&Object { info: &*info })) }
    }
    // SAFETY: the callback only reads loader-owned tables and calls `f`.
    unsafe { libc::dl_iterate_phdr(Some(visit::<F>), (&mut f as *mut F).cast()) };
}

/// An address inside this library, to tell it apart from the others.
pub fn own() -> usize {
    own as fn() -> usize as usize
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
    /// `dynamic` is the loaded `PT_DYNAMIC` of the object whose load bias is `base`.
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
