# Prints how long this machine's cores have been busy and in all (clock ticks, from /proc/stat),
# the clock ticks per second and the number of cores: two samples around a measurement say how
# busy the machine was.
read -r _ user nice system idle iowait irq softirq steal _ < /proc/stat
echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal)) $(getconf CLK_TCK) $(nproc)"
