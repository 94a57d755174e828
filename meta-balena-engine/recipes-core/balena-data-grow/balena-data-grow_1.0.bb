SUMMARY = "Grows the balena-data partition to the end of the card on first boot"
DESCRIPTION = "A oneshot service that grows the last partition of the card, labelled \
               balena-data (and the extended partition holding it), and its ext4 file \
               system online, so that one SD card image fits cards of any size."
HOMEPAGE = "https://github.com/ORG/balena-engine-rs"
BUGTRACKER = "https://github.com/ORG/balena-engine-rs/issues"
SECTION = "base"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://balena-data-grow.sh;beginline=2;endline=2;md5=653b254f286b881bdce1d14afdede628"
CVE_PRODUCT = ""

SRC_URI = "file://balena-data-grow.sh \
           file://balena-data-grow.service \
           "

S = "${UNPACKDIR}"

inherit systemd allarch features_check

REQUIRED_DISTRO_FEATURES = "systemd"

do_install() {
    install -d ${D}${sbindir} ${D}${systemd_system_unitdir}
    install -m 0755 ${S}/balena-data-grow.sh ${D}${sbindir}/balena-data-grow
    install -m 0644 ${S}/balena-data-grow.service ${D}${systemd_system_unitdir}/balena-data-grow.service
    sed -i -e 's,/usr/sbin/,${sbindir}/,' ${D}${systemd_system_unitdir}/balena-data-grow.service
}

SYSTEMD_SERVICE:${PN} = "balena-data-grow.service"

RDEPENDS:${PN} = "e2fsprogs-resize2fs util-linux-partx util-linux-sfdisk"
