#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Grows the data partition (label balena-data, the last partition of the card) and its ext4
# file system to the end of the card. Runs at every boot and writes nothing once the
# partition fills the card: the first boot of a freshly flashed card does the work.
# On an msdos table the data partition is a logical one: the extended partition holding it
# is grown first.
set -eu

label=balena-data
dev=$(readlink -f "/dev/disk/by-label/$label") || { echo "no partition labelled $label" >&2; exit 1; }
name=${dev##*/}
sys=/sys/class/block/$name
[ -e "$sys/partition" ] || { echo "$dev is not a partition" >&2; exit 1; }
num=$(cat "$sys/partition")
diskname=$(basename "$(readlink -f "$sys/..")")
disk=/dev/$diskname
disk_sectors=$(cat "/sys/class/block/$diskname/size")
end=$(( $(cat "$sys/start") + $(cat "$sys/size") ))
# Partitions are 4 MiB aligned: less than 4 MiB (8192 sectors of 512 bytes) free is full.
if [ $(( disk_sectors - end )) -ge 8192 ]; then
    echo "growing $dev (partition $num of $disk) to the end of the card"
    if [ "$num" -ge 5 ]; then
        for n in 1 2 3 4; do
            case "$(sfdisk --part-type "$disk" "$n" 2>/dev/null || true)" in
            5|f|85) echo ", +" | sfdisk --no-reread --no-tell-kernel -q -N "$n" "$disk" ;;
            esac
        done
    fi
    echo ", +" | sfdisk --no-reread --no-tell-kernel -q -N "$num" "$disk"
    partx -u -n "$num" "$disk"
fi
# Online resize of the mounted file system; nothing is written when it already fills the partition.
resize2fs "$dev"
