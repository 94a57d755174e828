# The Raspberry Pi command line (cmdline.txt), only in distros with the df-balena-engine override (see
# recipes-kernel/linux/linux-yocto_%.bbappend):
# - the root slot is mounted read-only from the start (the image is read-only-rootfs);
# - the Raspberry Pi kernels leave the memory cgroup controller off unless the command line turns it on:
#   without it `--memory` limits fail on a Pi (the engine warns at start and in /info).
CMDLINE_ROOTFS:append:df-balena-engine = " ro"
CMDLINE:append:df-balena-engine = " cgroup_enable=memory cgroup_memory=1"
