# systemd-coredump, which the core dump policy of conf/ pipes every crash to (it logs the crash
# and keeps nothing on production images). Only in distros with the df-balena-engine override
# (see recipes-kernel/linux/linux-yocto_%.bbappend).
PACKAGECONFIG:append:df-balena-engine = " coredump"
