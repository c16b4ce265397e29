# Seed 001_4c3e96c635851dad.txt, example 2: three producers, two consumers on a Queue; the
# main process puts one None once two producers are done, the other consumer stops on a
# get timeout.
# Changed: the import lines name shmq; sleeps of 1-2 s and 2 s are twentieths of that
# (the same proportions); the consumers' get timeout is 1 s instead of 5 s. Prints kept:
# the test checks every item produced is eaten exactly once and both consumers stop.
import time,random
from shmq import Process
from shmq import Queue


def producer(name,food, q):
    for i in range(10):
        time.sleep(random.randint(1,2) / 20)  # was: random.randint(1,2)
        f = '{}生产的{}号{}'.format(name,i, food)
        q.put(f)
        print('{}生产了{}号{}'.format(name,i, food))


def consumer(name,q):
    while True:
        try:
            k = q.get(timeout=1)  # was: timeout=5
            if k is not None:
                print('  {}吃了{}'.format(name,k))
                time.sleep(2 / 20)  # was: 2
            else:
                print('{}没东西吃了'.format(name))
                break
        except Exception:
            print('  {}等了这么久也没东西吃,看来是没了'.format(name))
            break
if __name__ == '__main__':
    queue = Queue()
    p1 = Process(target=producer, args=('吉祥', '包子',queue,))
    p2 = Process(target=producer, args=('红宝石', '蛋糕',queue,))
    p3 = Process(target=producer, args=('五芳斋', '粽子',queue,))
    p1.start()
    p2.start()
    p3.start()
    c1 = Process(target=consumer,args=('Jenny',queue,))
    c2 = Process(target=consumer,args=('Cony',queue,))
    c1.start()
    c2.start()
    p1.join()
    p2.join()
    queue.put(None)
