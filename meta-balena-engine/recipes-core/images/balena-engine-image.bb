SUMMARY = "Read-only systemd OS image running balena-engine"
DESCRIPTION = "A minimal systemd image with a read-only root file system and \
               balena-engine. The SD card image (wic) has a boot partition, two \
               equal root slots, a state partition and a data partition holding \
               the engine's data root, into which container images can be \
               preloaded at build time."
HOMEPAGE = "https://github.com/ORG/balena-engine-rs"
BUGTRACKER = "https://github.com/ORG/balena-engine-rs/issues"
SECTION = "images"
LICENSE = "MIT"
# The image's CVEs are its packages'; the image itself is no product of its own.
CVE_PRODUCT = ""

inherit core-image features_check

REQUIRED_DISTRO_FEATURES = "systemd"

IMAGE_FEATURES += "read-only-rootfs"
IMAGE_INSTALL = "packagegroup-core-boot \
                 balena-engine \
                 balena-engine-healthcheck \
                 balena-engine-policy \
                 balena-data-grow \
                 ${CORE_IMAGE_EXTRA_INSTALL} \
                 "
IMAGE_LINGUAS = ""

# Development images (EXTRA_IMAGE_FEATURES += "balena-development" in local.conf, or
# kas/development.yml): core dumps of the containers that ask for them are kept on the data
# partition (conf/development/), and there is a way in: root has an empty password and is
# logged in on the serial console (runqemu's console; a Pi's UART with ENABLE_UART = "1"); with
# BALENA_DEVELOPMENT_SSH_KEYS (public key lines) also root over ssh (dropbear), by key only.
# Production images have none of it: oe-core locks root's empty password and starts no ssh server.
IMAGE_FEATURES[validitems] += "balena-development"
FEATURE_PACKAGES_balena-development = "balena-engine-policy-development"
BALENA_DEVELOPMENT_SSH_KEYS ??= ""
BALENA_DEVELOPMENT_SSH_FEATURES = "${@'allow-root-login ssh-server-dropbear' if d.getVar('BALENA_DEVELOPMENT_SSH_KEYS').strip() else ''}"
BALENA_DEVELOPMENT_FEATURES = "empty-root-password serial-autologin-root ${BALENA_DEVELOPMENT_SSH_FEATURES}"
IMAGE_FEATURES += "${@bb.utils.contains('EXTRA_IMAGE_FEATURES', 'balena-development', '${BALENA_DEVELOPMENT_FEATURES}', '', d)}"

balena_development_ssh_keys() {
    install -d -m 0700 ${IMAGE_ROOTFS}${ROOT_HOME}/.ssh
    printf '%s\n' "${BALENA_DEVELOPMENT_SSH_KEYS}" > ${IMAGE_ROOTFS}${ROOT_HOME}/.ssh/authorized_keys
    chmod 0600 ${IMAGE_ROOTFS}${ROOT_HOME}/.ssh/authorized_keys
}
balena_development_ssh_keys[doc] = "Authorizes BALENA_DEVELOPMENT_SSH_KEYS for root's ssh logins (development images)"
ROOTFS_POSTPROCESS_COMMAND += "${@'balena_development_ssh_keys' if bb.utils.contains('IMAGE_FEATURES', 'ssh-server-dropbear', True, False, d) and d.getVar('BALENA_DEVELOPMENT_SSH_KEYS').strip() else ''}"

# Exactly what is flashed or booted, whatever the machine's defaults (meta-raspberrypi's
# rpi-base.inc adds tar.bz2 and ext3, oe-core's qemu.inc tar.zst and ext4.zst): the SD card image
# and its block map (`bmaptool copy balena-engine-image-MACHINE.rootfs.wic.bz2 /dev/sdX`); on the
# QEMU machines the plain wic that runqemu boots. More with IMAGE_FSTYPES:append in local.conf.
IMAGE_FSTYPES = "wic.bz2 wic.bmap"
IMAGE_FSTYPES:qemuall = "wic"
WKS_FILE = "balena-engine-sdcard.wks.in"
# The kickstart uses no bootloader plugin: none of the grub/syslinux/systemd-boot builds the
# class would otherwise add on x86-64 and aarch64.
WKS_FILE_DEPENDS = "${WKS_FILE_DEPENDS_DEFAULT}"

# Partition sizes in MiB (files/wic/balena-engine-sdcard.wks.in). Both root slots get
# BALENA_ROOT_SIZE; the data partition is at least BALENA_DATA_SIZE, more if the
# preloaded images need it, and is meant to be grown to fill the card on first boot.
BALENA_BOOT_SIZE ?= "100"
BALENA_ROOT_SIZE ?= "640"
BALENA_STATE_SIZE ?= "80"
BALENA_DATA_SIZE ?= "512"

# Mount points the OS policy (conf/ of the source tree) mounts the partitions on: they must
# exist in the read-only root file system.
BALENA_MOUNTPOINTS ?= "/mnt/state /mnt/data"

# Container images to preload into the data partition: docker-archive or OCI archives
# (`docker save`, `balena-engine image save`), paths absolute or relative to TOPDIR, e.g.
#   BALENA_ENGINE_PRELOAD = "/srv/apps/app.tar /srv/apps/supervisor.tar"
# They are loaded with the native CLI in direct mode (`--data-root`, no daemon) into
# BALENA_DATA_DIR/balena-engine, the data root the device uses at /mnt/data/balena-engine.
BALENA_ENGINE_PRELOAD ?= ""
BALENA_DATA_DIR = "${WORKDIR}/balena-data"
BALENA_ENGINE_DATA_SUBDIR = "balena-engine"

# Owners, device whiteouts and xattrs written by the load are recorded by pseudo, and wic
# reads them back from the same database (${WORKDIR}/pseudo, beside BALENA_DATA_DIR).
PSEUDO_INCLUDE_PATHS .= ",${BALENA_DATA_DIR}"

DEPENDS += "${@'balena-engine-native' if d.getVar('BALENA_ENGINE_PRELOAD').split() else ''}"

def balena_preload_paths(d):
    import os
    topdir = d.getVar('TOPDIR')
    return [p if os.path.isabs(p) else os.path.join(topdir, p)
            for p in (d.getVar('BALENA_ENGINE_PRELOAD') or '').split()]

fakeroot do_balena_preload() {
    install -d -m 0755 ${BALENA_DATA_DIR}/${BALENA_ENGINE_DATA_SUBDIR}
    for archive in ${@' '.join(balena_preload_paths(d))}; do
        if [ ! -f "$archive" ]; then
            bbfatal "BALENA_ENGINE_PRELOAD: no such file: $archive"
        fi
        bbnote "preloading $archive"
        balena-engine --data-root ${BALENA_DATA_DIR}/${BALENA_ENGINE_DATA_SUBDIR} image load -i "$archive"
    done
    if ${@bb.utils.contains('IMAGE_FEATURES', 'balena-development', 'true', 'false', d)}; then
        install -d -m 0755 ${BALENA_DATA_DIR}/coredump
    fi
    if [ -n "${BALENA_ENGINE_PRELOAD}" ]; then
        balena-engine --data-root ${BALENA_DATA_DIR}/${BALENA_ENGINE_DATA_SUBDIR} image ls
    fi
}
do_balena_preload[doc] = "Fills the data partition's tree with the engine's data root and the images of BALENA_ENGINE_PRELOAD"
do_balena_preload[cleandirs] = "${BALENA_DATA_DIR}"
do_balena_preload[file-checksums] += "${@' '.join('%s:True' % p for p in balena_preload_paths(d))}"
do_balena_preload[vardeps] += "BALENA_ENGINE_PRELOAD"
addtask balena_preload after do_rootfs before do_image

balena_mountpoints() {
    for mnt in ${BALENA_MOUNTPOINTS}; do
        install -d -m 0755 ${IMAGE_ROOTFS}$mnt
    done
}
balena_mountpoints[doc] = "Creates the mount points of the state and data partitions in the read-only root"
ROOTFS_POSTPROCESS_COMMAND += "balena_mountpoints"

# The persistent paths of balena-engine-policy (conf/README.md, "Persistent state"): their mount points
# and links in the read-only root (/etc/writable, /etc/systemd/network, /etc/balena-engine; /etc/hostname
# and /etc/machine-info as links into /etc/writable, the hostname moved there), made by the script that
# binds them at boot, from the list the image ships. /etc/machine-id stays empty (read-only-rootfs).
balena_root_overlay() {
    if [ -f ${IMAGE_ROOTFS}${nonarch_libdir}/balena-state/root-overlay.sh ]; then
        sh ${IMAGE_ROOTFS}${nonarch_libdir}/balena-state/root-overlay.sh --image ${IMAGE_ROOTFS}
    fi
}
balena_root_overlay[doc] = "Creates the mount points and links of the persistent paths (root-overlay.conf) in the read-only root"
ROOTFS_POSTPROCESS_COMMAND += "balena_root_overlay"

# /var/volatile is mounted by var-volatile.mount (balena-engine-policy): base-files' fstab
# line for it would define the same mount a second time through systemd-fstab-generator.
balena_fstab() {
    if [ -f ${IMAGE_ROOTFS}${sysconfdir}/fstab ]; then
        sed -i -e '\#[[:space:]]/var/volatile[[:space:]]#d' ${IMAGE_ROOTFS}${sysconfdir}/fstab
    fi
}
balena_fstab[doc] = "Removes base-files' /var/volatile line from fstab: var-volatile.mount owns that mount"
ROOTFS_POSTPROCESS_COMMAND += "balena_fstab"

# QEMU: `runqemu MACHINE balena-engine-image wic` boots the kernel directly on the SD card
# image, root file system on the first root slot (boot partition holds the kernel only).
IMAGE_BOOT_FILES:qemuall ?= "${KERNEL_IMAGETYPE}"
QB_DEFAULT_FSTYPE:qemuall = "wic"
QB_FSINFO:qemuall = "wic:no-kernel-in-fs"
QB_KERNEL_ROOT:qemuall = "/dev/vda2 ro"
