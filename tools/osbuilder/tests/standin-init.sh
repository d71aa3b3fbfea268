#!/bin/sh
# Test-only stand-in for kata-agent as /init (never shipped): does what the agent does first
# (load /etc/kata-agent/modules.load in order, find the agent channel, mount the share) and
# reports on the console, then powers the VM off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "STANDIN: init at uptime $(cut -d' ' -f1 /proc/uptime)"
while read -r ko; do
  [ -n "$ko" ] || continue
  insmod "$ko" || echo "STANDIN: insmod $ko failed"
done </etc/kata-agent/modules.load
echo "STANDIN: modules loaded at uptime $(cut -d' ' -f1 /proc/uptime)"
i=0
while [ $i -lt 50 ] && ! ls /sys/class/virtio-ports/*/name >/dev/null 2>&1; do
  sleep 0.1
  i=$((i + 1))
done
for f in /sys/class/virtio-ports/*/name; do
  [ -r "$f" ] && echo "STANDIN: virtio port $(cat "$f")"
done
# /mnt exists in every guest tree (a read-only image root cannot get a new directory)
if mount -t 9p -o trans=virtio,version=9p2000.L kataShared /mnt; then
  echo "STANDIN: 9p file: $(cat /mnt/hello.txt)"
else
  echo "STANDIN: mount 9p kataShared failed"
fi
echo "STANDIN: done"
poweroff -f
