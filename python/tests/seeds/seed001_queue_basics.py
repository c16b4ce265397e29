# Seed 001_4c3e96c635851dad.txt, example 1: multiprocessing.Queue basics (Queue(5), put, get,
# full, empty).
# Changed: the import line names shmq; the results of get/full/empty, discarded in the
# seed, are printed so that the test can check them.
from shmq import Queue
if __name__ == '__main__':
    q = Queue(5)  # 实例化队列对象,参数表示队列的容纳元素的多少.省略则表示无大小限制.
    q.put(1)  # 向队列中增加一个元素,如果此时超过队列容量,默认会阻塞
    print('get', q.get())  # 从队列中取出一个元素,如果此时队列为空,默认会阻塞
    print('full', q.full())  # 判断队列是否已满
    print('empty', q.empty())  # 判断队列是否已空
