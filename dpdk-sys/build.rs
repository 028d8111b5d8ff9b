//! Binds the system DPDK found by pkg-config.
//!
//! The raw `pkg-config --cflags libdpdk` output is used verbatim for both
//! bindgen and the C shim: the pkg-config crate drops `-include rte_config.h`
//! and `-march=...`, without which rte_memcpy.h does not compile.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("dpdk-sys: cannot run pkg-config ({e}); install pkg-config and libdpdk-dev (scripts/setup.sh)"));
    if !out.status.success() {
        panic!(
            "dpdk-sys: `pkg-config {} libdpdk` failed: {}; install libdpdk-dev (scripts/setup.sh)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout)
        .expect("pkg-config output is not UTF-8")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let cflags = pkg_config(&["--cflags"]);
    let version = pkg_config(&["--modversion"]).join("");
    println!("cargo:rustc-env=DPDK_PKG_VERSION={version}");
    println!("cargo:version={version}");

    // Link: shared libraries from pkg-config (-L, -l and -Wl flags).
    for flag in pkg_config(&["--libs"]) {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        } else if flag.starts_with("-Wl,") {
            // --as-needed would drop the PMD libraries EAL loads by path anyway; skip it.
            if flag != "-Wl,--as-needed" {
                println!("cargo:rustc-link-arg={flag}");
            }
        }
    }

    let mut cc = cc::Build::new();
    cc.file("shim.c").include(".").opt_level(3).warnings(false);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("seqd_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(cflags.iter())
        .clang_arg("-I.")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("seqd_.*")
        .allowlist_function("rte_eal_(init|cleanup|remote_launch|wait_lcore|mp_wait_lcore|process_type)")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_lcore_(count|is_enabled|to_socket_id)")
        .allowlist_function("rte_get_main_lcore")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_eth_dev_(count_avail|get_port_by_name|configure|start|stop|close|info_get|socket_id|default_mac_addr_set|set_mtu|is_valid_port)")
        .allowlist_function("rte_eth_(rx|tx)_queue_setup")
        .allowlist_function("rte_eth_(stats_get|stats_reset|link_get_nowait|macaddr_get|promiscuous_enable|allmulticast_enable)")
        .allowlist_function("rte_version")
        .allowlist_type("rte_eth_(conf|dev_info|stats|link|rxconf|txconf)")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("rte_mbuf")
        .allowlist_var("RTE_ETH_(MQ_RX_RSS|MQ_RX_NONE|RSS_IP|RSS_TCP|RSS_UDP|LINK_UP|LINK_DOWN|LINK_FULL_DUPLEX)")
        .allowlist_var("RTE_ETH_RX_OFFLOAD_.*")
        .allowlist_var("RTE_ETH_TX_OFFLOAD_.*")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE|RTE_PKTMBUF_HEADROOM|RTE_MAX_LCORE|RTE_MAX_ETHPORTS|SOCKET_ID_ANY")
        .allowlist_var("RTE_ETHER_ADDR_LEN")
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(false)
        .generate()
        .expect("dpdk-sys: bindgen failed on wrapper.h");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings
        .write_to_file(&out)
        .expect("dpdk-sys: cannot write bindings");
}
