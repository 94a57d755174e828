# Container essentials (overlayfs, namespaces, cgroups) for the QEMU machines' kernel. Only
# in distros with the "balena-engine" DISTRO_FEATURE turned into the df-balena-engine
# override (INHERIT += "distrooverrides", DISTRO_FEATURES_OVERRIDES += "balena-engine";
# kas.yml does both), so adding the layer alone changes no other build.
FILESEXTRAPATHS:prepend:df-balena-engine := "${THISDIR}/files:"

SRC_URI:append:df-balena-engine = " file://balena-engine.cfg"
