# Container essentials (overlayfs, namespaces, cgroups) for the Raspberry Pi kernels, with
# the fragment shared with linux-yocto's append. Only in distros with the df-balena-engine
# override (see recipes-kernel/linux/linux-yocto_%.bbappend).
FILESEXTRAPATHS:prepend:df-balena-engine := "${BALENA_ENGINE_LAYERDIR}/recipes-kernel/linux/files:"

SRC_URI:append:df-balena-engine = " file://balena-engine.cfg"
