SUMMARY = "Container engine for small ARM devices: CLI, daemon and healthcheck"
DESCRIPTION = "balena-engine is a container engine for fleets of small devices: \
               a content-addressed image store, docker-archive and OCI archives, \
               binary delta updates, a container runtime and balena-engined, a \
               daemon speaking the Docker Engine API. This recipe builds the Rust \
               workspace's binaries and installs the OS policy files the source \
               tree ships under conf/."
HOMEPAGE = "https://github.com/ORG/balena-engine-rs"
BUGTRACKER = "https://github.com/ORG/balena-engine-rs/issues"
SECTION = "console/utils"
LICENSE = "Apache-2.0"
# Not balenaEngine (Go, a Moby fork): CVEs filed against that code base do not apply here.
CVE_PRODUCT = "balena-engine-rs"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# By default the engine is built from the repository this layer lives in (the layer is at its top
# level), at SRCREV: a plain `kas build kas.yml` fetches nothing but the checkout itself, which must
# hold SRCREV (a full clone, not a shallow one). nobranch: SRCREV need not be on a local branch (CI
# checkouts of pull requests have none). To build a fork or another clone, set in local.conf:
#   BALENA_ENGINE_GIT_URI = "git://github.com/YOU/FORK.git;protocol=https;branch=main"
#   SRCREV:pn-balena-engine = "<commit>"    (or "${AUTOREV}")
# or build the working tree as it is, uncommitted changes included: kas/local-source.yml.
BALENA_ENGINE_SRC_DIR ?= "${@os.path.normpath(os.path.dirname(d.getVar('BALENA_ENGINE_LAYERDIR')))}"
BALENA_ENGINE_GIT_URI ?= "git://${BALENA_ENGINE_SRC_DIR};protocol=file;nobranch=1"
PV = "0.1.0+git"
SRC_URI = "${BALENA_ENGINE_GIT_URI}"
# The last commit that changed what this recipe builds from (rust/, conf/, Cargo.*, .cargo/): the
# install map and crates.inc match it, and tests/layer fails until it is bumped after such a change.
SRCREV = "be9e02627e42ed4fca60bdac0fecff4115e19259"

# Every crate of Cargo.lock, with its checksum: regenerate with `scripts/gen-crates-inc.py`
# (or `bitbake -c update_crates balena-engine`, which writes the same file).
require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd useradd features_check

# The units and OS policies are systemd's; the native tool (image preloading) needs none of it.
REQUIRED_DISTRO_FEATURES = "systemd"
REQUIRED_DISTRO_FEATURES:class-native = ""

# The workspace root is the top of the source tree (CARGO_SRC_DIR = ""): a plain
# `cargo build` of the virtual manifest builds every member's binaries.
BALENA_ENGINE_BINARIES = "balena-engine balena-engined balena-engine-healthcheck"
# The native tool is only the CLI, for `balena-engine --data-root DIR image load` at image build time.
BALENA_ENGINE_BINARIES:class-native = "balena-engine"
CARGO_BUILD_FLAGS:append:class-native = " -p balena-engine"

# Upstream's OS configuration, installed as conf/README.md maps it ("SOURCE:DESTINATION", SOURCE
# relative to ${S}/conf). tests/layer checks these lists against that table.
# The engine itself: its socket and unit, exec root, group.
BALENA_ENGINE_CONF = " \
    units/balena-engine.socket:${systemd_system_unitdir}/balena-engine.socket \
    units/balena-engine.service:${systemd_system_unitdir}/balena-engine.service \
    tmpfiles.d/balena-engine.conf:${nonarch_libdir}/tmpfiles.d/balena-engine.conf \
    sysusers.d/balena-engine.conf:${nonarch_libdir}/sysusers.d/balena-engine.conf \
"
# The OS policies around it (package balena-engine-policy): mounts, the persistent paths on the
# state partition, RAM-only logs and /tmp, the hardware watchdog, core dumps, memory overcommit.
BALENA_ENGINE_POLICY_CONF = " \
    units/mnt-data.mount:${systemd_system_unitdir}/mnt-data.mount \
    units/mnt-state.mount:${systemd_system_unitdir}/mnt-state.mount \
    units/balena-root-overlay.service:${systemd_system_unitdir}/balena-root-overlay.service \
    state/root-overlay.conf:${nonarch_libdir}/balena-state/root-overlay.conf \
    state/root-overlay.sh:${nonarch_libdir}/balena-state/root-overlay.sh \
    units/systemd-hostnamed.service.d/50-balena-root-overlay.conf:${systemd_system_unitdir}/systemd-hostnamed.service.d/50-balena-root-overlay.conf \
    units/tmp.mount:${sysconfdir}/systemd/system/tmp.mount \
    units/var-volatile.mount:${sysconfdir}/systemd/system/var-volatile.mount \
    tmpfiles.d/00-create-volatile.conf:${sysconfdir}/tmpfiles.d/00-create-volatile.conf \
    journald.conf.d/50-balena-journal.conf:${systemd_unitdir}/journald.conf.d/50-balena-journal.conf \
    system.conf.d/50-balena-watchdog.conf:${systemd_unitdir}/system.conf.d/50-balena-watchdog.conf \
    coredump.conf.d/50-balena-coredump.conf:${systemd_unitdir}/coredump.conf.d/50-balena-coredump.conf \
    sysctl.d/50-coredump.conf:${sysconfdir}/sysctl.d/50-coredump.conf \
    sysctl.d/60-balena-memory.conf:${nonarch_libdir}/sysctl.d/60-balena-memory.conf \
"
# Development images only (IMAGE_FEATURES balena-development): core dumps of the processes
# that ask are kept on the data partition.
BALENA_ENGINE_DEVELOPMENT_CONF = " \
    development/coredump-development.conf:${sysconfdir}/systemd/coredump.conf.d/90-balena-development.conf \
    development/var-lib-systemd-coredump.mount:${sysconfdir}/systemd/system/var-lib-systemd-coredump.mount \
"

do_install() {
    install -d ${D}${bindir}
    for bin in ${BALENA_ENGINE_BINARIES}; do
        if [ ! -x "${B}/target/${CARGO_TARGET_SUBDIR}/$bin" ]; then
            bbfatal "cargo did not build $bin (is its crate a member of the workspace?)"
        fi
        install -m 0755 "${B}/target/${CARGO_TARGET_SUBDIR}/$bin" "${D}${bindir}/$bin"
    done

    for entry in ${BALENA_ENGINE_CONF} ${BALENA_ENGINE_POLICY_CONF} ${BALENA_ENGINE_DEVELOPMENT_CONF}; do
        src="${S}/conf/${entry%%:*}"
        dest="${D}${entry#*:}"
        if [ ! -f "$src" ]; then
            bbfatal "the source tree has no conf/${entry%%:*} (see conf/README.md)"
        fi
        install -d "$(dirname "$dest")"
        install -m 0644 "$src" "$dest"
    done
    # Mount point of the development images' core dump bind mount (the root is read-only).
    install -d ${D}${localstatedir}/lib/systemd/coredump
}

do_install:class-native() {
    install -d ${D}${bindir}
    install -m 0755 "${B}/target/${CARGO_TARGET_SUBDIR}/balena-engine" "${D}${bindir}/balena-engine"
}

PACKAGES =+ "${PN}-healthcheck ${PN}-policy ${PN}-policy-development"

def balena_engine_conf_files(d, var):
    return " ".join(e.split(":", 1)[1] for e in (d.getVar(var) or "").split())

FILES:${PN}-healthcheck += "${bindir}/balena-engine-healthcheck"
FILES:${PN}-policy += "${@balena_engine_conf_files(d, 'BALENA_ENGINE_POLICY_CONF')}"
FILES:${PN}-policy-development += "${@balena_engine_conf_files(d, 'BALENA_ENGINE_DEVELOPMENT_CONF')} \
                                   ${localstatedir}/lib/systemd/coredump \
                                   "
FILES:${PN} += "${@balena_engine_conf_files(d, 'BALENA_ENGINE_CONF')}"

# Units enabled at build time (the root file system is read-only).
SYSTEMD_PACKAGES = "${PN} ${PN}-policy ${PN}-policy-development"
SYSTEMD_SERVICE:${PN} = "balena-engine.socket balena-engine.service"
SYSTEMD_SERVICE:${PN}-policy = "mnt-data.mount mnt-state.mount balena-root-overlay.service tmp.mount var-volatile.mount"
SYSTEMD_SERVICE:${PN}-policy-development = "var-lib-systemd-coredump.mount"
SYSTEMD_AUTO_ENABLE = "enable"

# The socket's group, created at build time: systemd-sysusers cannot add it to a read-only /etc.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "-r balena-engine"

RDEPENDS:${PN}-policy-development += "${PN}-policy"
# Pulls verify registries' TLS certificates against the system's CA store (/etc/ssl/certs).
RDEPENDS:${PN} += "ca-certificates"
# The unit keeps the engine's data on the data partition (mnt-data.mount, RequiresMountsFor);
# a distro with its own mount policy can leave the policy package out.
RRECOMMENDS:${PN} += "${PN}-policy"
# balena-engine-healthcheck checks the engine from outside (supervisor, rollback check).
RRECOMMENDS:${PN} += "${PN}-healthcheck"
# What the engine needs from the kernel (recipes-kernel/linux/files/balena-engine.cfg, checked against
# rust/runtime/kernel-config.txt), on kernels that build it as modules (the Raspberry Pi kernels build
# most of the networking ones so); a kernel with them built in has no such packages, which is fine for
# recommends. Container root file systems are overlayfs mounts:
RRECOMMENDS:${PN} += "kernel-module-overlay"
# bridge networks (veth pairs on a bridge, filtered by nftables) and published ports (NAT, masquerade),
# IPv4 and IPv6:
RRECOMMENDS:${PN} += " \
    kernel-module-veth \
    kernel-module-bridge \
    kernel-module-br-netfilter \
    kernel-module-nf-conntrack \
    kernel-module-nf-defrag-ipv4 \
    kernel-module-nf-defrag-ipv6 \
    kernel-module-nf-nat \
    kernel-module-nf-tables \
    kernel-module-nft-chain-nat \
    kernel-module-nft-nat \
    kernel-module-nft-masq \
    kernel-module-nft-ct \
"

BBCLASSEXTEND = "native"
