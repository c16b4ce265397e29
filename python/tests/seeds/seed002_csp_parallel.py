# Seed 002_c52864b522f1332e.txt, example 6 (顺序进程(CSP), Python PyCSP库): two PyCSP processes
# run in parallel, each sleeps a second and prints; main prints after both ended.
# Changed: only the import line (was `from pycsp.parallel import *`; names shmq.csp). The
# test checks that both processes printed, and that "Terminating" came after them.
from shmq.csp import *
import time
@process
def P1():
   time.sleep(1)
   print('P1 exiting')
@process
def P2():
   time.sleep(1)
   print('P2 exiting')
def main():
   Parallel(P1(), P2())
   print('Terminating')
if __name__ == '__main__':
   main()
