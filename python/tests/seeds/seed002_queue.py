# Seed 002_c52864b522f1332e.txt, example 1 (队列): a child puts [42, None, 'hello'] on a Queue.
# Changed: only the import line (names shmq). The test checks the printed list.
from shmq import Process, Queue
import queue
import random
def f(q):
   q.put([42, None, 'hello'])
def main():
   q = Queue()
   p = Process(target = f, args = (q,))
   p.start()
   print (q.get())
if __name__ == '__main__':
   main()
