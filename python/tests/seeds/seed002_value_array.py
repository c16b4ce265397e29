# Seed 002_c52864b522f1332e.txt, example 5 (Ctypes数组和值): a child sets a Value and negates
# an Array.
# Changed: the import line, missing from the web page ("Multiprocessing模块导入Process,
# Value,Array"), is added naming shmq; the loop body in f, which lost its indentation on
# the web page (a syntax error), is indented under the for. The test checks 3.1415927 and
# [0, -1, ..., -9].
from shmq import Process, Value, Array

def f(n, a):
   n.value = 3.1415927
   for i in range(len(a)):
      a[i] = -a[i]

if __name__ == '__main__':
   num = Value('d', 0.0)
   arr = Array('i', range(10))

   p = Process(target = f, args = (num, arr))
   p.start()
   p.join()
   print (num.value)
   print (arr[:])
